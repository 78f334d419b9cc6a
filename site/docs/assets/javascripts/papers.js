// Filter the papers index (papers.md) by free text, section and year. No library needed.
(function () {
  function setup() {
    var table = document.getElementById("papers-table");
    if (!table || table.dataset.ready) return;
    table.dataset.ready = "1";
    var search = document.getElementById("papers-search");
    var section = document.getElementById("papers-section");
    var year = document.getElementById("papers-year");
    var count = document.getElementById("papers-count");
    var empty = document.getElementById("papers-empty");
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });

    function apply() {
      var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      var wantSection = section.value;
      var wantYear = year.value;
      var shown = 0;
      rows.forEach(function (row, i) {
        var ok = words.every(function (w) { return texts[i].indexOf(w) !== -1; });
        if (ok && wantSection) ok = row.dataset.sections.split("|").indexOf(wantSection) !== -1;
        if (ok && wantYear) ok = row.dataset.year === wantYear;
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      count.textContent = shown + " of " + rows.length + " papers";
      empty.hidden = shown !== 0;
    }
    search.addEventListener("input", apply);
    section.addEventListener("change", apply);
    year.addEventListener("change", apply);
    apply();
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(setup);
  } else {
    document.addEventListener("DOMContentLoaded", setup);
  }
})();
