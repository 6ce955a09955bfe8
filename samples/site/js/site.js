// Crumb & Co.: marks the current page in the navigation and keeps the footer year current.
(function () {
  "use strict";
  var here = window.location.pathname;
  document.querySelectorAll("nav a").forEach(function (link) {
    if (link.getAttribute("href") === here) {
      link.setAttribute("aria-current", "page");
    }
  });
  var year = document.getElementById("year");
  if (year) {
    year.textContent = String(new Date().getFullYear());
  }
})();
