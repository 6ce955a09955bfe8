// Crumb & Co.: fills "Today's specials" on the home page from the bakery's JSON feed.
(function () {
  "use strict";
  var list = document.getElementById("specials");
  if (!list) {
    return;
  }
  fetch("/api/specials.json")
    .then(function (response) {
      return response.ok ? response.json() : { specials: [] };
    })
    .then(function (data) {
      list.textContent = "";
      data.specials.forEach(function (item) {
        var li = document.createElement("li");
        li.textContent = item.name + " - " + item.price;
        list.appendChild(li);
      });
    })
    .catch(function () {
      list.textContent = "Ask at the counter for today's specials.";
    });
})();
