// The three ways a static site can offer "Manage billing". No framework, no build step.
// The site signs users in with the Hosted UI (authorization code + PKCE) and keeps the ID token in
// sessionStorage; the token goes in a form field or an Authorization header, never in a URL.
"use strict";
const cfg = window.PORTAL_CONFIG;
const $ = (id) => document.getElementById(id);

function b64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function signIn() {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem("pkce", JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: "code", client_id: cfg.clientId, redirect_uri: cfg.siteUrl, scope: "openid email",
    state, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256",
  });
  location.assign(`${cfg.hostedUiUrl}/oauth2/authorize?${query}`);
}

async function finishSignIn() {
  const query = new URLSearchParams(location.search);
  if (!query.has("code") && !query.has("error")) return;
  history.replaceState(null, "", location.pathname);  // the code must not linger in the address bar
  const saved = JSON.parse(sessionStorage.getItem("pkce") || "{}");
  sessionStorage.removeItem("pkce");
  if (!query.get("code") || query.get("state") !== saved.state) return;
  const response = await fetch(`${cfg.hostedUiUrl}/oauth2/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", client_id: cfg.clientId,
      code: query.get("code"), redirect_uri: cfg.siteUrl, code_verifier: saved.verifier }),
  });
  const tokens = await response.json();
  if (tokens.id_token) sessionStorage.setItem("id_token", tokens.id_token);
}

function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch (e) { return {}; }
}

async function openWithFetch() {
  $("fetch-error").textContent = "";
  let response;
  try {
    response = await fetch(`${cfg.apiUrl}/portal`, {
      headers: { Authorization: `Bearer ${sessionStorage.getItem("id_token")}`, Accept: "application/json" },
    });
  } catch (e) {  // offline, DNS, CORS refused: fetch() rejects without an answer
    $("fetch-error").textContent = "The billing service could not be reached. Check your connection and try again.";
    return;
  }
  let answer = {};
  try { answer = await response.json(); } catch (e) { /* not JSON: a proxy's or gateway's error page */ }
  if (response.ok && answer.url) { location.assign(answer.url); return; }
  if (response.status === 401) {  // expired or refused sign-in: the page must not go on showing "Signed in"
    sessionStorage.removeItem("id_token");
    sessionStorage.setItem("expired", "1");
    render();
  }
  $("fetch-error").textContent = answer.message || `The billing service answered unexpectedly (HTTP ${response.status}).`;
}

// The billing status: what the signed-in user has, to show a plan or gate content. It is the caller's own
// (private, short-lived, with an ETag): "no-cache" revalidates it, so a change shows on the next look.
async function billingStatus() {
  const response = await fetch(`${cfg.apiUrl}/billing/status`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem("id_token")}`, Accept: "application/json" },
    cache: "no-cache",
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

function describePlan(status) {
  const live = status.subscriptions.filter((s) => ["active", "trialing", "past_due"].includes(s.status));
  if (!live.length) return "No plan";
  const first = live[0];
  const name = (first.items[0] && first.items[0].lookup_key) === "pro_monthly" ? "Pro" : "Subscribed";
  if (first.cancel_at_period_end && first.current_period_end) {
    // In the reader's own locale (the browser's), not one fixed for everybody.
    const ends = new Date(first.current_period_end * 1000).toLocaleDateString(
      undefined, { year: "numeric", month: "2-digit", day: "2-digit" });
    return `${name} (ends ${ends})`;
  }
  return first.status === "trialing" ? `${name} (trial)` : name;
}

async function showPlan() {
  if (!sessionStorage.getItem("id_token")) return;
  // Back from the Payment Link: the purchase reaches us by webhook within moments; look again until it shows.
  const justBought = new URLSearchParams(location.search).has("purchased");
  for (let attempt = 0; attempt < (justBought ? 30 : 1); attempt++) {
    let status;
    try { status = await billingStatus(); } catch (e) { $("plan-badge").textContent = "Unavailable"; return; }
    $("plan-badge").textContent = describePlan(status);
    $("premium").hidden = !status.entitlements.includes("premium-content");
    const offered = !!(cfg.checkoutPrice || cfg.paymentLinkUrl || cfg.pricingTable);
    $("subscribe").hidden = !offered || status.subscriptions.length > 0;
    if (!$("subscribe").hidden) offerPurchases(status);
    if (!justBought || status.subscriptions.length) return;
    await new Promise((done) => setTimeout(done, 1000));
  }
}

// Every way to buy names the signed-in user, so a purchase is theirs whatever email is typed at Stripe:
// - Subscribe: the API opens Stripe Checkout for the user's own customer (the one "Manage billing" opens);
// - a Payment Link carries the user's signed purchase reference (client_reference_id, from the status answer);
// - an embedded pricing table gets a Customer Session for the user's customer from the API.
function offerPurchases(status) {
  if (cfg.paymentLinkUrl && status.client_reference_id) {
    const link = new URL(cfg.paymentLinkUrl);
    link.searchParams.set("client_reference_id", status.client_reference_id);
    $("payment-link").href = link.toString();
    $("payment-link-offer").hidden = false;
  }
  if (cfg.pricingTable && !$("pricing-table").hasChildNodes()) showPricingTable(status.client_reference_id);
}

async function showPricingTable(reference) {
  let session;
  try {
    const response = await fetch(`${cfg.apiUrl}/billing/customer-session`, { method: "POST",
      headers: { Authorization: `Bearer ${sessionStorage.getItem("id_token")}`, Accept: "application/json" } });
    if (!response.ok) return;  // the other two ways still work
    session = await response.json();
  } catch (e) { return; }
  const script = document.createElement("script");
  script.src = cfg.pricingTable.script_url;  // Stripe's: https://js.stripe.com/v3/pricing-table.js
  document.head.append(script);
  const table = document.createElement("stripe-pricing-table");
  table.setAttribute("pricing-table-id", cfg.pricingTable.id);
  table.setAttribute("publishable-key", cfg.pricingTable.publishable_key);
  table.setAttribute("customer-session-client-secret", session.client_secret);
  table.setAttribute("client-reference-id", reference || session.client_reference_id);
  $("pricing-table").append(table);
  $("pricing").hidden = false;
}

// Signing out of the site alone would leave the Hosted UI's own session: the next person at this computer would
// be signed in as this user. The API's sign-out passes through the Hosted UI's /logout and comes back here.
function signOut() {
  sessionStorage.clear();
  location.assign(`${cfg.apiUrl}/portal/signout?` + new URLSearchParams({ return_to: cfg.siteUrl }));
}

function render() {
  const token = sessionStorage.getItem("id_token");
  const back = cfg.siteUrl;
  $("plain-link").href = `${cfg.apiUrl}/portal`;
  $("billing-sign-out").href = `${cfg.apiUrl}/portal/signout?` + new URLSearchParams({ return_to: back });
  $("plain-link-card").href = `${cfg.apiUrl}/portal?` + new URLSearchParams({ flow: "payment_method_update", return_to: back });
  $("portal-form").action = `${cfg.apiUrl}/portal`;
  $("form-return").value = back;
  $("form-token").value = token || "";
  $("form-button").disabled = $("fetch-button").disabled = !token;
  const expired = !token && sessionStorage.getItem("expired");
  $("sign-in").hidden = !!token;
  $("sign-in").textContent = expired ? "Sign in again" : "Sign in";
  $("sign-out").hidden = !token;
  // A plain link: it signs the user in on the way if needed; back here with ?purchased=1 once paid.
  if (cfg.checkoutPrice) {
    $("subscribe-link").href = `${cfg.apiUrl}/billing/checkout?` + new URLSearchParams({
      price: cfg.checkoutPrice, return_to: `${back}?purchased=1`, cancel_to: back });
  } else $("subscribe-link").hidden = true;
  if (!token) { $("plan-badge").textContent = "Sign in to see your plan"; $("premium").hidden = $("subscribe").hidden = true; }
  $("who").textContent = token ? `Signed in as ${claims(token).email || "a user"}.`
    : expired ? "Your sign-in has expired. Sign in again to manage billing here."
    : "Not signed in to this site. The plain link works anyway: it signs you in on the way to billing.";
}

$("sign-in").addEventListener("click", () => { sessionStorage.removeItem("expired"); signIn(); });
$("sign-out").addEventListener("click", signOut);
$("fetch-button").addEventListener("click", openWithFetch);
finishSignIn().then(render).then(showPlan);
