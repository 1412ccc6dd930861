/* Paints the page in its theme before the modules load (a classic script in <head>): the same rule as
 * js/theme.js, which takes over once the page runs. */
(function () {
    "use strict";
    var theme = "auto";
    try {
        theme = window.localStorage.getItem("simplestats.theme") || "auto";
    } catch (ignored) { /* private mode */ }
    if (theme !== "light" && theme !== "dark") {
        theme = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
    }
    document.documentElement.setAttribute("data-bs-theme", theme);
}());
