// Light and dark themes (Bootstrap's colour modes): "auto" follows the system. Loaded as a classic script
// in <head> as well as imported, so the page is painted in its theme from the first frame.

const KEY = "simplestats.theme";
const THEMES = ["auto", "light", "dark"];

export function storedTheme(storage) {
    try {
        const theme = storage.getItem(KEY);
        return THEMES.indexOf(theme) === -1 ? "auto" : theme;
    } catch {
        return "auto";
    }
}

// The mode to show for a choice: "auto" is the system's.
export function resolveTheme(theme, systemDark) {
    return theme === "auto" ? (systemDark ? "dark" : "light") : theme;
}

export function applyTheme(theme) {
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    document.documentElement.setAttribute("data-bs-theme", resolveTheme(theme, dark));
}

// The switch in the navbar; onChange() redraws what the canvas painted in the old colours.
export function bindThemeSwitch(select, storage, onChange) {
    select.value = storedTheme(storage);
    select.addEventListener("change", () => {
        try {
            storage.setItem(KEY, select.value);
        } catch { /* private mode: for this page only */ }
        applyTheme(select.value);
        onChange();
    });
    if (window.matchMedia) {
        window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
            if (storedTheme(storage) === "auto") {
                applyTheme("auto");
                onChange();
            }
        });
    }
}

// Colours for the plots' grid, read from the theme in force.
export function gridColours() {
    const style = getComputedStyle(document.documentElement);
    const get = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    return {
        borderColor: get("--bs-border-color", "#dee2e6"),
        color: get("--bs-secondary-color", "#6c757d"),
        tickColor: get("--bs-border-color-translucent", "#f1f3f5"),
    };
}
