// The handout's Print button (a file, since the pages' policy runs no inline scripts).
document.getElementById("print-handout").addEventListener("click", () => window.print());
