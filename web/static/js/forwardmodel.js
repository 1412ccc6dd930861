// What the server panel shows of forwarding (/api/health's `forward`, docs/FORWARDING.md): one row per
// destination, as text and classes only (no DOM here, so node's test runner checks it).
import { formatCount, formatSeconds, significant } from "./format.js";

// The oldest queued line is shown in red past this many seconds.
export const LATE_SECONDS = 60;

// The dot's colour class and the word that says the same without colour.
const STATES = {
    connected: { dot: "ok", label: "connected" },
    sending: { dot: "udp", label: "UDP, sending" },
    connecting: { dot: "wait", label: "connecting" },
    waiting: { dot: "wait", label: "not connected" },
};

// A wait or an age: "0.5 s", "12 s", "2 min", "1.5 h".
function formatAge(seconds) {
    if (seconds < 10) {
        return significant(seconds, 2) + " s";
    }
    if (seconds < 60) {
        return Math.round(seconds) + " s";
    }
    return formatSeconds(seconds, 2);
}

function stateOf(destination) {
    const known = STATES[destination.state];
    if (known) {
        return known;
    }
    // A state this page does not know yet: amber unless the server says it is connected.
    return destination.connected ? STATES.connected : { dot: "wait", label: String(destination.state || "unknown") };
}

// The dot's tooltip: what the link is doing, when it tries again and why it failed.
function titleOf(destination, state) {
    const parts = [state.label];
    if (state.dot === "ok" && typeof destination.connected_seconds === "number") {
        parts[0] += " for " + formatAge(destination.connected_seconds);
    }
    if (typeof destination.reconnect_in === "number") {
        parts.push("next try in " + formatAge(destination.reconnect_in));
    }
    if (typeof destination.failures === "number" && destination.failures > 0) {
        parts.push(formatCount(destination.failures) + (destination.failures === 1 ? " failure" : " failures"));
    }
    if (destination.last_error) {
        parts.push("last error: " + destination.last_error);
    }
    return parts.join("; ");
}

// The rows for `forward` (null, absent or without destinations: none, and the panel is hidden).
export function forwardRows(forward) {
    if (!forward || !Array.isArray(forward.destinations)) {
        return [];
    }
    return forward.destinations.map((destination) => {
        const state = stateOf(destination);
        const queued = Number(destination.queued_lines) || 0;
        const age = typeof destination.oldest_queued_seconds === "number" ? destination.oldest_queued_seconds : null;
        const dropped = Number(destination.dropped_lines) || 0;
        const retry = state.dot === "wait" && typeof destination.reconnect_in === "number"
            ? "retry in " + formatAge(destination.reconnect_in) : "";
        return {
            key: String(destination.name || destination.destination),
            address: String(destination.destination || destination.name || "?"),
            dot: state.dot,
            connected: state.dot === "ok",
            label: state.label,
            retry,
            stateText: state.label + (retry ? ", " + retry : ""),
            title: titleOf(destination, state),
            queued: formatCount(queued),
            queuedLines: queued,
            age: age === null || queued === 0 ? "\u2014" : formatAge(age),
            late: age !== null && queued > 0 && age > LATE_SECONDS,
            dropped: formatCount(dropped),
            droppedAny: dropped > 0,
        };
    });
}

// The line above the rows: the tier, the names and the mode.
export function forwardSummary(forward) {
    if (!forward || !Array.isArray(forward.destinations) || !forward.destinations.length) {
        return "";
    }
    const parts = ["every " + formatAge(forward.tier || 0)];
    if (forward.names) {
        parts.push(forward.names);
    }
    if (forward.destinations.length > 1 && forward.mode) {
        parts.push(forward.mode === "hash" ? "hashed" : "to all");
    }
    if (forward.prefix) {
        parts.push("prefix " + forward.prefix);
    }
    return parts.join(", ");
}
