// Every page: forms marked data-confirm ask first (deleting a run).
"use strict";
document.addEventListener("submit", function (e) {
  const form = e.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    e.preventDefault();
  }
});
