// Package gateway is the invoke path: the plain HTTP endpoint that buyers' servers and
// widgets call to run an agent. Per call, in this order: parse the API key, verify it
// (apikey.Verifier: signature, cached row, liveness), check its scope (secret keys need
// "invoke", publishable ones "widget:invoke"), resolve the key's config (Resolver, cached
// briefly), check the browser origin for publishable keys, spend the rate budgets (per
// key, per tenant, per widget visitor), check the subscription and that the agent has a
// provisioned flow, check the monthly quota, validate the body and tweaks, call Langflow
// (plain or streamed), meter the call and answer.
//
// Conventions a reader of the API needs:
//
//   - Metering: every call that got past key verification leaves one usage record,
//     failures included (status and error code; tokens 0 for failures before Langflow).
//     A 2xx (or a stream's end event) is sent only after its record committed; when
//     recording fails the answer is 503 USAGE_NOT_RECORDED.
//   - Sessions: Langflow keys chat memory by session id, so the gateway always sends one,
//     "<tenant id>:<config id>:<caller session>", and the caller only ever sees its own
//     part. Without a session_id the gateway makes a random one and returns it.
//   - Persona: the config's system prompt travels as the flat tweak "system_prompt"
//     (PersonaTweak); flows that support personas read it there.
//   - Idempotency: an Idempotency-Key header (1-128 of [A-Za-z0-9._:-]) makes the request
//     id a function of (key, idempotency key), so a retried call is metered once. The agent
//     does run again on a replay: answers are not cached.
//   - Request ids: X-Request-Id and the body's request_id are the usage record's id; the
//     server middleware's id is reused when it generated it (see Gateway.requestID).
//
// Mount with Gateway.Routes(mux), or Gateway.Endpoints() to wrap each route.
package gateway
