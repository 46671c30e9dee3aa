// Withdrawal assessment form: a live total and number-key entry. Progressive enhancement only:
// without this file the form still works and the server computes the total when it is saved.
(function () {
  "use strict";
  function setUp(form) {
    var items = Array.prototype.slice.call(form.querySelectorAll("fieldset.item"));
    var total = document.getElementById("live-total");
    var band = document.getElementById("live-band");
    var count = document.getElementById("live-count");
    var bands = [];
    try { bands = JSON.parse(form.dataset.bands || "[]"); } catch (e) { bands = []; }

    function update() {
      var sum = 0, answered = 0;
      items.forEach(function (fs) {
        var checked = fs.querySelector("input[type=radio]:checked");
        if (checked) { sum += Number(checked.value); answered += 1; }
        fs.classList.toggle("answered", Boolean(checked));
      });
      total.textContent = String(sum);
      count.textContent = answered + " of " + items.length + " items answered" +
        (answered < items.length ? " (so far)" : "");
      var hit = bands.filter(function (b) { return b.min <= sum && sum <= b.max; })[0];
      band.textContent = hit && answered === items.length ? hit.label : "";
    }

    function focusItem(index) {
      var fs = items[index];
      if (!fs) { form.querySelector("#assessed_at").focus(); return; }
      var target = fs.querySelector("input:checked") || fs.querySelector("input[type=radio]");
      target.focus();
      fs.scrollIntoView({ block: "nearest" });
    }

    form.addEventListener("change", update);
    form.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      if (!/^[0-9]$/.test(event.key)) return;
      var fs = event.target.closest && event.target.closest("fieldset.item");
      if (!fs) return;
      var radio = fs.querySelector('input[type=radio][value="' + event.key + '"]');
      if (!radio) return; // not an allowed value for this item: ignore the key
      event.preventDefault();
      radio.checked = true;
      update();
      focusItem(items.indexOf(fs) + 1);
    });
    update();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-live-total]");
    if (form) setUp(form);
    var errors = document.getElementById("errors");
    if (errors) errors.focus();
  });
})();
