// Render the math that pymdownx.arithmatex marks (generic mode) with the bundled KaTeX.
// Material's document$ fires on every page load, including instant navigation.
(function () {
  function render(root) {
    if (typeof renderMathInElement !== "function") return;
    renderMathInElement(root, {
      delimiters: [
        { left: "\\[", right: "\\]", display: true },
        { left: "\\(", right: "\\)", display: false },
      ],
      throwOnError: false,
    });
  }
  function renderAll() {
    document.querySelectorAll(".arithmatex").forEach(function (el) { render(el); });
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(renderAll);
  } else {
    document.addEventListener("DOMContentLoaded", renderAll);
  }
})();
