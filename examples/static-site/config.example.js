// Copy to config.js and fill in from your stack outputs and user pool.
window.PORTAL_CONFIG = {
  apiUrl: "https://abc123.execute-api.eu-west-1.amazonaws.com",   // PortalUrl without /portal
  hostedUiUrl: "https://your-prefix.auth.eu-west-1.amazoncognito.com", // the user pool's domain
  clientId: "your-app-client-id",                                   // a public app client (no secret)
  siteUrl: "https://www.example.com/",                              // this page; a callback URL of the client
  checkoutPrice: "",   // optional: a lookup key of the stack's CheckoutPrices: "Subscribe" opens Stripe Checkout
  paymentLinkUrl: "",  // optional: a Stripe Payment Link (after payment, redirect to siteUrl + "?purchased=1")
  pricingTable: null,  // optional: { id: "prctbl_...", publishable_key: "pk_...",
                       //   script_url: "https://js.stripe.com/v3/pricing-table.js" }
};
