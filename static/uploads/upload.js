/* The upload page: show what was chosen, send it with a progress bar, then open the result page.
   Without this script the form still posts normally; the browser then shows no progress. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest || !window.DOMParser) return;

  var maxBytes = Number(form.getAttribute("data-max-bytes"));
  var maxFiles = Number(form.getAttribute("data-max-files"));
  var inputs = Array.prototype.slice.call(form.querySelectorAll('input[type="file"]'));
  var selection = document.getElementById("upload-selection");
  var errorBox = document.getElementById("upload-error");
  var progress = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-bar");
  var statusLine = document.getElementById("upload-status");
  var button = document.getElementById("upload-button");

  function size(bytes) {
    var units = ["bytes", "KB", "MB", "GB", "TB"];
    var unit = 0;
    while (bytes >= 1024 && unit < units.length - 1) { bytes /= 1024; unit += 1; }
    return (unit === 0 ? bytes : bytes.toFixed(1)) + " " + units[unit];
  }

  function chosen() {
    var files = [];
    inputs.forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (file) {
        files.push({ file: file, name: file.webkitRelativePath || file.name });
      });
    });
    return files;
  }

  function total(files) {
    return files.reduce(function (sum, item) { return sum + item.file.size; }, 0);
  }

  function problem(files) {
    if (!files.length) return "Choose files or a folder to upload first.";
    if (files.length > maxFiles) {
      return "That is " + files.length + " files; one upload takes at most " + maxFiles +
        ". Upload the folder in parts, or as a zip.";
    }
    if (total(files) > maxBytes) {
      return "That is " + size(total(files)) + "; one upload takes at most " + size(maxBytes) +
        ". Upload fewer files at a time.";
    }
    return "";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function describe() {
    var files = chosen();
    var trouble = files.length ? problem(files) : "";
    selection.textContent = files.length
      ? files.length + " file" + (files.length === 1 ? "" : "s") + " chosen, " + size(total(files)) + "."
      : "No files chosen yet.";
    selection.classList.toggle("too-much", Boolean(trouble));
    showError(trouble);
  }

  function finish() {
    button.disabled = false;
    button.textContent = "Upload";
    inputs.forEach(function (input) { input.disabled = false; });
  }

  function messageFrom(xhr) {
    var page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    var alert = page.getElementById("upload-error");
    var text = alert ? alert.textContent.trim() : "";
    return text || "The upload failed (the server answered " + xhr.status + "). Nothing may have been stored; please try again.";
  }

  inputs.forEach(function (input) { input.addEventListener("change", describe); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = chosen();
    var trouble = problem(files);
    if (trouble) { showError(trouble); return; }
    showError("");

    var data = new FormData();
    data.append("csrfmiddlewaretoken", form.elements.csrfmiddlewaretoken.value);
    data.append("paths", JSON.stringify(files.map(function (item) { return item.name; })));
    files.forEach(function (item) { data.append("files", item.file, item.file.name); });

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var percent = Math.floor((e.loaded / e.total) * 100);
      bar.value = percent;
      bar.textContent = percent + "%";
      statusLine.textContent = "Uploading: " + size(e.loaded) + " of " + size(e.total) + " (" + percent + "%)";
    });
    xhr.upload.addEventListener("load", function () {
      bar.removeAttribute("value");
      statusLine.textContent = "Uploaded. Checking and storing " + files.length + " file" +
        (files.length === 1 ? "" : "s") + " in the archive…";
    });
    xhr.addEventListener("load", function () {
      var done = xhr.status === 200 && /\/upload\/\d+\/$/.test(new URL(xhr.responseURL).pathname);
      if (done) {
        statusLine.textContent = "Done. Opening the result…";
        window.location.assign(xhr.responseURL);
        return;
      }
      progress.hidden = true;
      showError(messageFrom(xhr));
      finish();
    });
    xhr.addEventListener("error", function () {
      progress.hidden = true;
      showError("The connection was lost during the upload. Files the server had not fully received were not stored; please try again.");
      finish();
    });

    button.disabled = true;
    button.textContent = "Uploading…";
    inputs.forEach(function (input) { input.disabled = true; });
    bar.value = 0;
    statusLine.textContent = "Starting the upload…";
    progress.hidden = false;
    xhr.send(data);
  });
})();
