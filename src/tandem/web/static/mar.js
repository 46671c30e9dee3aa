// Progressive enhancement of the unit's medication record: a dose's form posts in the
// background and its row is replaced by the server's answer (the page works without this file).
document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table[data-mar]");
  if (!table) return;
  table.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.mar-form");
    if (!form) return;
    event.preventDefault();
    const data = new FormData(form);
    if (event.submitter && event.submitter.name) data.set(event.submitter.name, event.submitter.value);
    const row = form.closest("tr");
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(form.action, { method: "POST", body: data, headers: { "X-Row": "1" } });
      if (response.redirected) { window.location.assign(response.url); return; }
      const html = (await response.text()).trim();
      if ((response.ok || response.status === 422) && html.startsWith("<tr")) {
        const holder = document.createElement("tbody");
        holder.innerHTML = html;
        const fresh = holder.firstElementChild;
        row.replaceWith(fresh);
        const count = document.querySelector("[data-overdue-count]");
        if (count && row.classList.contains("is-overdue") && !fresh.classList.contains("is-overdue")) {
          count.textContent = String(Math.max(0, Number(count.textContent) - 1));
        }
        if (response.ok) fresh.classList.add("is-saved");
        const focus = fresh.querySelector("[aria-invalid='true']") || fresh.querySelector("a");
        if (focus) focus.focus();
      } else if (response.ok) {
        window.location.reload();
      } else {
        document.open(); document.write(html); document.close();  // the refusal page as sent
      }
    } catch (error) {
      // The network failed: post it the ordinary way (the button pressed goes with it).
      if (event.submitter && event.submitter.name) {
        const pressed = document.createElement("input");
        pressed.type = "hidden"; pressed.name = event.submitter.name; pressed.value = event.submitter.value;
        form.append(pressed);
      }
      form.submit();
    }
  });
});
