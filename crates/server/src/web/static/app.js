// Live deployment progress: re-fetch the server-rendered fragment every 2 s until final.
(function () {
  var el = document.getElementById("live");
  if (!el || !el.dataset.liveUrl || el.querySelector("[data-final]")) return;
  var timer = setInterval(function () {
    fetch(el.dataset.liveUrl, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        el.innerHTML = html;
        if (el.querySelector("[data-final]")) clearInterval(timer);
      })
      .catch(function () {});
  }, 2000);
})();
