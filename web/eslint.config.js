// ESLint flat config: the dashboard's ES modules run in the browser, the tests and copy-vendor in node.
import js from "@eslint/js";
import globals from "globals";

export default [
    { ignores: ["node_modules/", "static/vendor/"] },
    js.configs.recommended,
    {
        files: ["static/js/**/*.js"],
        languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.browser } },
        rules: {
            "no-implicit-globals": "error",
            "prefer-const": "error",
            "no-var": "error",
            eqeqeq: "error",
            curly: "error",
        },
    },
    {
        // The fallback for browsers without modules: a classic script, ES5.
        files: ["static/app.js", "static/theme-boot.js"],
        languageOptions: { ecmaVersion: 5, sourceType: "script", globals: { ...globals.browser } },
        // ES5 has no catch without a binding.
        rules: { "no-unused-vars": ["error", { caughtErrors: "none" }] },
    },
    {
        files: ["test/**/*.js", "copy-vendor.js", "eslint.config.js"],
        languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: { ...globals.node } },
    },
];
