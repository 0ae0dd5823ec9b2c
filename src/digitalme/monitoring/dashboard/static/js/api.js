// The admin APIs with the session's bearer token. A 401 or 403 ends the
// session (the page goes back to sign-in); other failures throw ApiError.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export class Api {
  constructor(token, onRefused) {
    this.token = token;
    this.onRefused = onRefused;
  }

  async request(method, path, params) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, value);
    }
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${this.token}`, Accept: "application/json" },
      });
    } catch {
      throw new ApiError(0, { message: "the service cannot be reached" });
    }
    const body = await response.json().catch(() => null);
    if (response.status === 401 || response.status === 403) {
      this.onRefused(response.status, body);
      throw new ApiError(response.status, body);
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  get(path, params) {
    return this.request("GET", path, params);
  }

  post(path) {
    return this.request("POST", path);
  }
}
