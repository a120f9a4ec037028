// Copy buttons on the admin's patient-links page. The field stays selected as a visible
// fallback when the browser refuses the clipboard (plain http, or permission denied).
document.querySelectorAll("[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    field.focus();
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Press Ctrl+C to copy";
    }
  });
});
