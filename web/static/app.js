/* SimpleStats dashboard: the fallback for a browser without JavaScript modules.
 * The page itself is the ES modules under js/ (loaded by <script type="module">); a browser that cannot
 * run them loads this classic script instead (<script nomodule>), which says so where the list would be.
 */
(function () {
    "use strict";
    var message = document.createElement("div");
    message.className = "alert alert-warning m-3";
    message.setAttribute("role", "alert");
    message.appendChild(document.createTextNode(
        "This dashboard needs a browser that runs JavaScript modules (any current Chrome, Firefox, Safari or Edge). " +
        "The HTTP API (/api/metrics, /api/series) works from any client."));
    document.body.insertBefore(message, document.body.firstChild);
}());
