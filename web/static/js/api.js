// The API client: fetch with a timeout, the token header, at most one request of each kind in flight
// (a new one of a kind aborts the one before), and errors whose message says what went wrong in words.

import { partialFrom, resolutionChoices } from "./series.js";

const TOKEN_KEY = "simplestats.apiToken";
const TIMEOUT_MS = 10000;

export class ApiError extends Error {
    constructor(message, status, body, aborted = false) {
        super(message);
        this.status = status;
        this.body = body;
        this.aborted = aborted;
    }
}

// The server did not answer (down, restarting, overloaded): worth a retry with backoff, not a message per panel.
export function isConnectionError(error) {
    return error instanceof ApiError && !error.aborted &&
        (error.status === 0 || error.status === 502 || error.status === 503 || error.status === 504);
}

export function isAborted(error) {
    return error instanceof ApiError && error.aborted;
}

export function storedToken(storage) {
    try {
        return storage.getItem(TOKEN_KEY) || "";
    } catch {
        return "";
    }
}

export function storeToken(storage, token) {
    try {
        storage.setItem(TOKEN_KEY, token);
    } catch { /* private mode: the token lasts until the page closes */ }
}

function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params || {})) {
        if (value === undefined || value === null || value === "") {
            continue;
        }
        for (const one of Array.isArray(value) ? value : [value]) {
            search.append(name, String(one));
        }
    }
    const text = search.toString();
    return text ? "?" + text : "";
}

function describe(status, statusText, body) {
    if (body && typeof body.error === "string") {
        return body.error + (body.parameter ? " (parameter \u201c" + body.parameter + "\u201d)" : "");
    }
    if (status >= 200 && status < 300) {
        return "The server sent an answer that is not JSON.";
    }
    return "The server answered HTTP " + status + (statusText ? " " + statusText : "") + ".";
}

// createApi({storage, onAuth}): onAuth(status) is told of every 401/403 (to ask for the token).
export function createApi({ storage, onAuth, fetchImpl = (...args) => window.fetch(...args), timeoutMs = TIMEOUT_MS }) {
    const inFlight = new Map();   // kind -> AbortController

    function headers(extra) {
        const token = storedToken(storage);
        return { ...(token ? { "X-SimpleStats-Token": token } : {}), ...extra };
    }

    async function request(kind, method, path, params, body) {
        const previous = inFlight.get(kind);
        if (previous) {
            previous.abort();
        }
        const controller = new AbortController();
        inFlight.set(kind, controller);
        let timedOut = false;
        const timer = setTimeout(() => {
            timedOut = true;
            controller.abort();
        }, timeoutMs);
        try {
            let response;
            try {
                response = await fetchImpl(path + query(params), {
                    method,
                    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
                    body: body === undefined ? undefined : JSON.stringify(body),
                    signal: controller.signal,
                });
            } catch {
                if (timedOut) {
                    throw new ApiError("The server did not answer in time.", 0, null);
                }
                if (controller.signal.aborted) {
                    throw new ApiError("superseded", -1, null, true);
                }
                throw new ApiError("Could not reach the server (network error).", 0, null);
            }
            let parsed;
            try {
                parsed = await response.json();
            } catch {
                if (controller.signal.aborted && !timedOut) {
                    throw new ApiError("superseded", -1, null, true);
                }
                parsed = undefined;
            }
            if (response.status === 401 || response.status === 403) {
                onAuth(response.status);
            }
            if (!response.ok || parsed === undefined) {
                throw new ApiError(describe(response.status, response.statusText, parsed), response.status, parsed);
            }
            return parsed;
        } finally {
            clearTimeout(timer);
            if (inFlight.get(kind) === controller) {
                inFlight.delete(kind);
            }
        }
    }

    return {
        get: (kind, path, params) => request(kind, "GET", path, params),
        post: (kind, path, body) => request(kind, "POST", path, undefined, body),
        del: (kind, path) => request(kind, "DELETE", path),
        busy: (kind) => inFlight.has(kind),
        abort(kind) {
            const controller = inFlight.get(kind);
            if (controller) {
                controller.abort();
            }
        },
        headers,
    };
}

// Every series of a plot in one answer of the batch shape (docs/API.md, GET/POST /api/series/batch).
// A server without the batch route is read one /api/series per key (same kind, so in flight together)
// and its answers put into the same shape; the caller never knows which it got.
export function createSeriesReader(api) {
    let batchRoute = true;

    async function viaBatch(request) {
        return api.post(request.kind || "plot", "/api/series/batch", {
            series: request.keys.map((key) => ({ key, fields: request.fieldsOf(key) || undefined })),
            filter: request.filter || undefined,
            from: request.from,
            until: request.until,
            resolution: request.resolution,
            since: request.since === null ? undefined : request.since,
        });
    }

    async function oneByOne(request, context) {
        // A kind per place in the plot: a newer read aborts the older one's requests.
        const answers = await Promise.all(request.keys.map((key, i) => api.get((request.kind || "plot") + "-" + i, "/api/series", {
            key, from: request.from, until: request.until, resolution: request.resolution,
            fields: (request.fieldsOf(key) || []).join(",") || null,
        }).then((body) => ({ key, body }), (error) => ({ key, error }))));
        const aborted = answers.find((a) => a.error && (isAborted(a.error) || isConnectionError(a.error)));
        if (aborted) {
            throw aborted.error;
        }
        const series = answers.filter((a) => a.body).map((a) => a.body);
        const missing = answers.filter((a) => a.error && a.error.status === 404).map((a) => a.key);
        const errors = answers.filter((a) => a.error && a.error.status !== 404)
            .map((a) => ({ key: a.key, message: a.error.message }));
        const first = series[0];
        const now = context.now();
        const resolution = first ? first.resolution : null;
        return {
            from: first ? first.from : null,
            until: first ? first.until : null,
            now,
            resolution,
            partial_from: resolution ? partialFrom(now, resolution) : now,
            since: null,
            resolutions: context.tiers ? resolutionChoices(context.tiers, first ? first.from : now - 3600,
                first ? first.until : now, now, context.maxPoints) : null,
            series,
            missing,
            errors,
        };
    }

    return {
        get batchRoute() {
            return batchRoute;
        },
        async read(request, context) {
            if (batchRoute) {
                try {
                    const body = await viaBatch(request);
                    return { errors: [], missing: [], ...body };
                } catch (error) {
                    if (!(error instanceof ApiError) || (error.status !== 404 && error.status !== 405)) {
                        throw error;
                    }
                    batchRoute = false;
                }
            }
            return oneByOne({ ...request, since: null }, context);
        },
    };
}
