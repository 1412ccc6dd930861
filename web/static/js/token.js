// The API token prompt: a server bound beyond loopback (or run with --read-token on) answers 401/403
// without its token; the page asks for it once, keeps it in localStorage and sends it with every request.

import { storeToken, storedToken } from "./api.js";

function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
        node.className = className;
    }
    if (text !== undefined) {
        node.textContent = text;
    }
    return node;
}

// createTokenPrompt({storage, onSaved()}) -> ask(status)
export function createTokenPrompt({ storage, onSaved }) {
    let open = false;
    let modal = null;
    let reason = null;
    let input = null;

    function build() {
        modal = el("div", "modal fade");
        modal.id = "token-modal";
        modal.tabIndex = -1;
        modal.setAttribute("aria-labelledby", "token-title");
        const dialog = modal.appendChild(el("div", "modal-dialog modal-dialog-centered"));
        const form = dialog.appendChild(el("form", "modal-content"));
        form.id = "token-form";
        const title = form.appendChild(el("div", "modal-header")).appendChild(el("h2", "modal-title h5", "API token"));
        title.id = "token-title";
        const body = form.appendChild(el("div", "modal-body"));
        reason = body.appendChild(el("p"));
        reason.id = "token-reason";
        const label = body.appendChild(el("label", "form-label", "Token"));
        label.htmlFor = "token-input";
        input = body.appendChild(el("input", "form-control"));
        input.id = "token-input";
        input.type = "password";
        input.required = true;
        input.autocomplete = "off";
        body.appendChild(el("div", "form-text", "Kept in this browser and sent with every request. " +
            "The server logs at start-up the file that holds it (DATA_DIR/api-token when generated)."));
        const save = form.appendChild(el("div", "modal-footer")).appendChild(el("button", "btn btn-primary", "Use token"));
        save.type = "submit";
        save.id = "token-save";
        document.body.appendChild(modal);
        modal.addEventListener("shown.bs.modal", () => input.focus());
        modal.addEventListener("hidden.bs.modal", () => {
            open = false;
        });
        form.addEventListener("submit", (event) => {
            event.preventDefault();
            storeToken(storage, input.value.trim());
            input.value = "";
            window.bootstrap.Modal.getOrCreateInstance(modal).hide();
            onSaved();
        });
    }

    return function ask(status) {
        if ((status !== 401 && status !== 403) || open) {
            return;
        }
        if (!modal) {
            build();
        }
        open = true;
        reason.textContent = status === 403 && storedToken(storage) !== ""
            ? "The server refused the token this browser sent; enter the right one."
            : "This server needs its API token.";
        window.bootstrap.Modal.getOrCreateInstance(modal).show();
    };
}
