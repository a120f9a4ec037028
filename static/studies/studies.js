// The physicians' pages: copying a study's patient link, the report size check, and the
// "Search" choice following the study dates. Everything works without this file except copying.
(function () {
  "use strict";

  // The fallback box goes after the row of buttons, made on first use.
  function fallbackBox(button) {
    var actions = button.closest(".actions");
    var box = actions.nextElementSibling;
    if (box && box.classList.contains("copy-fallback")) return box;
    box = document.createElement("div");
    box.className = "copy-fallback";
    var label = document.createElement("label");
    label.textContent = "Patient link";
    var field = document.createElement("input");
    field.type = "text";
    field.readOnly = true;
    field.className = "copy-text";
    label.appendChild(field);
    var status = document.createElement("p");
    status.className = "hint copy-status";
    box.appendChild(label);
    box.appendChild(status);
    actions.insertAdjacentElement("afterend", box);
    return box;
  }

  function showFallback(button, link, status) {
    var box = fallbackBox(button);
    var field = box.querySelector(".copy-text");
    field.value = link || "";
    box.querySelector("label").hidden = !link;
    box.querySelector(".copy-status").textContent = status;
    box.hidden = false;
    if (link) {
      field.focus();
      field.select();
    }
  }

  function flash(button, text) {
    var original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = text;
    button.classList.add("done");
    window.setTimeout(function () {
      button.textContent = original;
      button.classList.remove("done");
    }, 2500);
  }

  function copyPatientLink(button) {
    button.disabled = true;
    fetch(button.dataset.patientLink, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("the server answered " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (!data || typeof data.link !== "string" || !data.link) {
          throw new Error("the server sent no link");
        }
        if (!navigator.clipboard || !window.isSecureContext) {
          showFallback(button, data.link, "Copy the link above (the browser does not allow automatic copying here).");
          return;
        }
        return navigator.clipboard.writeText(data.link).then(
          function () {
            flash(button, "Link copied");
          },
          function () {
            showFallback(button, data.link, "The browser refused to copy: select the link above and copy it.");
          }
        );
      })
      .catch(function (error) {
        showFallback(button, "", "The patient link could not be made: " + error.message + ".");
      })
      .finally(function () {
        button.disabled = false;
      });
  }

  // "Attach PDF" on a list opens the page's one report form for that study; without this
  // script (or without the dialog) the link leads to the form on the study's own page.
  function openAttachDialog(link) {
    var dialog = document.getElementById("attach-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return false;
    var form = dialog.querySelector("form");
    form.action = link.dataset.attachReport + "?next=" +
      encodeURIComponent(window.location.pathname + window.location.search);
    dialog.querySelector(".attach-study").textContent = link.dataset.studyLabel || "";
    form.reset();
    dialog.showModal();
    return true;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-patient-link]");
    if (button) {
      event.preventDefault();
      copyPatientLink(button);
      return;
    }
    var attach = event.target.closest("[data-attach-report]");
    if (attach && openAttachDialog(attach)) {
      event.preventDefault();
      return;
    }
    var close = event.target.closest("[data-close-dialog]");
    if (close) close.closest("dialog").close();
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.classList && event.target.classList.contains("copy-text")) {
      event.target.select();
    }
  });

  // A report above the limit is refused before it is sent, instead of after a long upload.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var limit = Number(form.dataset.maxBytes || 0);
    var input = form.querySelector('input[type="file"]');
    if (!limit || !input || !input.files.length) return;
    if (input.files[0].size > limit) {
      event.preventDefault();
      input.setCustomValidity("This file is larger than " + Math.round(limit / 1048576) + " MB.");
      input.reportValidity();
    }
  });

  // On a phone, the results matter more than the form that found them: fold it to one line.
  var folding = document.querySelector("details[data-fold-on-phone]");
  if (folding && window.matchMedia("(max-width: 599px)").matches) {
    folding.open = false;
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.type === "file") target.setCustomValidity("");
    // Entering a study date means searching by it: pick "With Study Date".
    if ((target.name === "date_from" || target.name === "date_to") && target.value) {
      var choice = target.form && target.form.elements.search;
      if (choice) choice.value = "dated";
    }
  });
})();
