#!/usr/bin/env node
// Copies the few browser files the dashboard loads from node_modules into
// static/vendor/, so the page works offline with no build step and no CDN.
// Runs as the npm postinstall script: `npm ci` in web/ makes the page complete.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, "node_modules");
const vendor = path.join(here, "static", "vendor");

// [source under node_modules, name in static/vendor]
const FILES = [
    ["jquery/dist/jquery.min.js", "jquery.min.js"],
    // Flot's es5 bundle holds the core and all plugins (time, hover, legend,
    // selection, navigate, fillbetween); the drag events that the selection
    // plugin listens for come from the separate jquery.event.drag shipped in lib/.
    ["flot/dist/es5/jquery.flot.js", "jquery.flot.js"],
    ["flot/lib/jquery.event.drag.js", "jquery.event.drag.js"],
    ["bootstrap/dist/css/bootstrap.min.css", "bootstrap.min.css"],
    ["bootstrap/dist/js/bootstrap.bundle.min.js", "bootstrap.bundle.min.js"],
];

function main() {
    fs.mkdirSync(vendor, { recursive: true });
    for (const [source, name] of FILES) {
        const from = path.join(modules, source);
        if (!fs.existsSync(from)) {
            console.error(`copy-vendor: ${from} is missing; run npm ci in web/`);
            process.exit(1);
        }
        fs.copyFileSync(from, path.join(vendor, name));
    }
    console.log(`copy-vendor: ${FILES.length} files copied into ${vendor}`);
}

main();
