// The signed-in admin: the host's access token, kept in this tab's
// sessionStorage (gone when the tab closes), and dropped when it expires.

const KEY = "digitalme.dashboard.session";
export const ADMIN_ROLES = new Set(["Admin", "SuperAdmin"]);

export function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (saved && saved.token && saved.expiresAt > Date.now()) return saved;
  } catch {
    // unreadable: sign in again
  }
  clear();
  return null;
}

export function save(login) {
  const session = {
    token: login.access_token,
    expiresAt: Date.now() + login.expires_in * 1000,
    user: { name: login.user.display_name || login.user.email, role: login.user.role },
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export function clear() {
  sessionStorage.removeItem(KEY);
}

// POST the host's login route; resolves to the session, or throws an Error
// whose message is what the page shows.
export async function signIn(path, email, password) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
  } catch {
    throw new Error("The service cannot be reached.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) throw new Error("Wrong email or password.");
    throw new Error(body.message || `Sign-in failed (HTTP ${response.status}).`);
  }
  if (!ADMIN_ROLES.has(body.user && body.user.role)) {
    throw new Error("This account is not an administrator: the dashboard is for Admin and SuperAdmin accounts.");
  }
  return save(body);
}
