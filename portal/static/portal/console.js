// The console's small behaviours (no framework; htmx does the live partial updates):
// confirmations for destructive forms, copy buttons, dismissible toasts.
(function () {
  "use strict";
  const dialog = document.getElementById("confirm-dialog");

  // <form data-confirm="Stop service x? …"> asks first, in the page's own dialog.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.dataset || !form.dataset.confirm || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(form.dataset.confirm)) { form.dataset.confirmed = "yes"; form.requestSubmit(); }
      return;
    }
    dialog.querySelector(".confirm-text").textContent = form.dataset.confirm;
    dialog.querySelector("#confirm-title").textContent = form.dataset.confirmTitle || "Are you sure?";
    const yes = dialog.querySelector('[data-answer="yes"]');
    yes.textContent = form.dataset.confirmButton || "Confirm";
    dialog.returnValue = "";
    dialog.showModal();
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "yes") { form.dataset.confirmed = "yes"; form.requestSubmit(); }
    });
  }, true);
  if (dialog) {
    dialog.addEventListener("click", function (event) {
      const answer = event.target.dataset && event.target.dataset.answer;
      if (answer) dialog.close(answer);
    });
  }

  // <button class="copy" data-copy="#id"> copies the element's text.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (button) {
      const source = document.querySelector(button.dataset.copy);
      if (!source) return;
      const text = source.value !== undefined ? source.value : source.textContent;
      const done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done);
      } else {  // plain http: select and copy the old way
        const area = document.createElement("textarea");
        area.value = text; document.body.appendChild(area); area.select();
        document.execCommand("copy"); area.remove(); done();
      }
      return;
    }
    const close = event.target.closest(".toast-close");
    if (close) close.parentElement.remove();
  });
})();

// <div data-show-when="source=address|bucket"> is shown (and its inputs enabled) only while the
// form's control named "source" has one of those values: forms show the fields that apply.
(function () {
  "use strict";
  function current(form, name) {
    const controls = form.querySelectorAll('[name="' + name + '"]');
    for (const control of controls) {
      if (control.type === "radio" || control.type === "checkbox") {
        if (control.checked) return control.type === "checkbox" ? "on" : control.value;
      } else if (control.dataset.kindOf === undefined) {
        return control.value;
      }
    }
    return form.dataset[name] || "";
  }
  function apply(form) {
    for (const block of form.querySelectorAll("[data-show-when]")) {
      const [name, values] = block.dataset.showWhen.split("=");
      const on = values.split("|").indexOf(current(form, name)) >= 0;
      block.hidden = !on;
      for (const input of block.querySelectorAll("input, select, textarea")) input.disabled = !on;
    }
  }
  window.emsApplyShowWhen = apply;
  document.addEventListener("change", function (event) {
    const form = event.target.form;
    if (form && form.querySelector("[data-show-when]")) apply(form);
  });
  document.addEventListener("DOMContentLoaded", function () {
    for (const form of document.querySelectorAll("form")) {
      if (form.querySelector("[data-show-when]")) apply(form);
    }
  });
})();
