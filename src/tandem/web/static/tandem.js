// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // Submit a filter form when its select changes (the button stays for keyboard and no-JS users).
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  // Confirm before destructive-looking actions.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  // A chart wider than the screen (a phone) opens at its right end: now, not the oldest point.
  document.querySelectorAll(".chart-figure").forEach((figure) => {
    if (figure.scrollWidth > figure.clientWidth) figure.scrollLeft = figure.scrollWidth;
  });
  // Parts of a page that refresh themselves: <div data-refresh="/url" data-every="30">.
  document.querySelectorAll("[data-refresh]").forEach((region) => {
    const every = Number(region.dataset.every || 30) * 1000;
    setInterval(async () => {
      // Never pull the page from under a keyboard user: wait while focus is inside the region.
      if (region.contains(document.activeElement)) return;
      try {
        const response = await fetch(region.dataset.refresh, { headers: { "X-Fragment": "1" } });
        // Signed out meanwhile (the fetch followed the redirect to the sign-in page): go there.
        if (response.redirected) { window.location.assign(response.url); return; }
        if (response.ok) region.innerHTML = await response.text();
      } catch (error) { /* keep the last good view; the next tick tries again */ }
    }, every);
  });
});
