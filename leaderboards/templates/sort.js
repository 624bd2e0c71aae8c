// Click a header to sort by that column; numbers by value (data-sort), empty cells last.
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, idx) {
    th.addEventListener("click", function () {
      var text = th.dataset.type === "text";
      var cur = th.getAttribute("aria-sort");
      var dir = cur ? (cur === "descending" ? "ascending" : "descending") : (text ? "ascending" : "descending");
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir);
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(r) {
        var c = r.cells[idx];
        var v = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent.trim();
        if (v === "") return null;
        var n = Number(v);
        return text || isNaN(n) ? v.toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null) return y === null ? 0 : 1;
        if (y === null) return -1;
        var c = x < y ? -1 : x > y ? 1 : 0;
        return dir === "ascending" ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
