// The Dapr JavaScript SDK (@dapr/dapr 3.4.1) against a Tandem sidecar, over
// HTTP and gRPC: invocation (a query string in the method too), state with
// ETags, bulk reads, transactions and metadata, and one assertion for each
// row of the compatibility table (docs/compatibility.md) where Tandem answers otherwise
// than daprd. tests/e2e (TestJSSDK) starts the sidecars and runs this with
// node --test; the environment says where they are:
//
//	HTTP_PORT, GRPC_PORT  the client sidecar's API ports (no app; its
//	                      statestore is Redis)
//	TARGET                the app id of a testapp, whose /echo/ answers
//	                      with what it received as JSON
import { test } from "node:test";
import assert from "node:assert/strict";
import { DaprClient, CommunicationProtocolEnum, HttpMethod, StateConcurrencyEnum } from "@dapr/dapr";

const target = process.env.TARGET;
const store = "statestore";
const protocols = {
  http: { daprPort: process.env.HTTP_PORT, communicationProtocol: CommunicationProtocolEnum.HTTP },
  grpc: { daprPort: process.env.GRPC_PORT, communicationProtocol: CommunicationProtocolEnum.GRPC },
};

// The HTTP client throws Error(JSON.stringify({error, error_msg, status}))
// for a non-2xx answer, error_msg being the sidecar's body; save and delete
// return {error} instead of throwing. The gRPC client rejects with grpc-js's
// ServiceError (code, details, metadata).
function httpError(e) {
  const err = e instanceof Error ? e : e?.error;
  const parsed = JSON.parse(err.message);
  return { status: parsed.status, body: JSON.parse(parsed.error_msg) };
}

async function rejected(promise) {
  try {
    const out = await promise;
    if (out?.error) return out.error; // HTTP save and delete
  } catch (e) {
    return e?.error ?? e; // gRPC save rejects with {error}
  }
  assert.fail("the call succeeded");
}

for (const [name, opts] of Object.entries(protocols)) {
  const client = new DaprClient({ daprHost: "127.0.0.1", logger: { level: 0 }, ...opts });
  const key = (k) => `${name}-${k}`;

  test(`${name}: invoke with a body and a query string in the method`, async () => {
    const out = await client.invoker.invoke(target, "echo/hello?x=1&y=two", HttpMethod.POST, { n: 42 });
    assert.equal(out.method, "POST");
    assert.equal(out.path, "/echo/hello");
    assert.equal(out.query, "x=1&y=two");
    assert.deepEqual(JSON.parse(out.body), { n: 42 });
    const get = await client.invoker.invoke(target, "echo/plain", HttpMethod.GET);
    assert.equal(get.method, "GET");
    assert.equal(get.query, "");
  });

  test(`${name}: state with ETags`, async () => {
    await client.state.save(store, [{ key: key("a"), value: { v: 1 } }]);
    assert.deepEqual(await client.state.get(store, key("a")), { v: 1 });
    const [item] = await client.state.getBulk(store, [key("a")]);
    assert.equal(item.key, key("a"));
    assert.ok(item.etag, "getBulk gives the ETag");
    // A save with the current ETag succeeds and changes it; the old one
    // is then stale.
    assert.deepEqual(await client.state.save(store, [{ key: key("a"), value: { v: 2 }, etag: item.etag }]), {});
    const stale = await rejected(client.state.save(store, [{ key: key("a"), value: { v: 3 }, etag: item.etag }]));
    if (name === "http") {
      const { status, body } = httpError(stale);
      assert.equal(status, 409);
      assert.equal(body.errorCode, "ERR_STATE_SAVE");
    } else {
      assert.equal(stale.code, 10); // ABORTED
    }
    assert.deepEqual(await client.state.get(store, key("a")), { v: 2 });
    const [now] = await client.state.getBulk(store, [key("a")]);
    assert.deepEqual(await client.state.delete(store, key("a"), { etag: now.etag }), {});
    assert.equal(await client.state.get(store, key("a")), "");
  });

  test(`${name}: bulk`, async () => {
    await client.state.save(store, [
      { key: key("b1"), value: "one" },
      { key: key("b2"), value: { two: 2 } },
    ]);
    const items = await client.state.getBulk(store, [key("b1"), key("b2"), key("missing")]);
    const byKey = Object.fromEntries(items.map((i) => [i.key, i]));
    assert.equal(byKey[key("b1")].data, "one");
    assert.deepEqual(byKey[key("b2")].data, { two: 2 });
    assert.ok(key("missing") in byKey, "a missing key is listed");
    assert.ok(!byKey[key("missing")].data, "without data");
  });

  // The SDK's gRPC client takes a transaction's values as strings (it
  // passes them to Buffer.from).
  test(`${name}: transactions`, async () => {
    await client.state.save(store, [{ key: key("t-old"), value: "old" }]);
    await client.state.transaction(store, [
      { operation: "upsert", request: { key: key("t-new"), value: "made" } },
      { operation: "delete", request: { key: key("t-old") } },
    ]);
    assert.equal(await client.state.get(store, key("t-new")), "made");
    assert.equal(await client.state.get(store, key("t-old")), "");
  });

  test(`${name}: metadata`, async () => {
    await client.metadata.set(key("sdk"), "set by the JS SDK");
    const md = await client.metadata.get();
    assert.equal(md.id, process.env.CLIENT_ID);
    assert.equal(md.extended[key("sdk")], "set by the JS SDK");
    assert.ok(md.extended.daprRuntimeVersion, "extended.daprRuntimeVersion");
    assert.ok(md.components.some((c) => c.name === store && c.type === "state.redis"));
  });

  // The compatibility table: one assertion per row where Tandem answers
  // otherwise than daprd 1.14.

  test(`${name}: compatibility: invoking an unknown app id`, async () => {
    const err = await rejected(client.invoker.invoke("no-such-app", "echo/x", HttpMethod.GET));
    if (name === "http") {
      // As daprd.
      const { status, body } = httpError(err);
      assert.equal(status, 500);
      assert.equal(body.errorCode, "ERR_DIRECT_INVOKE");
    } else {
      assert.equal(err.code, 5); // NOT_FOUND; daprd: INTERNAL (13)
      assert.match(err.details, /no-such-app/);
    }
  });

  test(`${name}: compatibility: a transaction with a stale ETag`, async () => {
    await client.state.save(store, [{ key: key("tx"), value: 1 }]);
    const [item] = await client.state.getBulk(store, [key("tx")]);
    await client.state.save(store, [{ key: key("tx"), value: 2 }]);
    const err = await rejected(client.state.transaction(store, [
      { operation: "upsert", request: { key: key("tx"), value: "3", etag: item.etag } },
    ]));
    if (name === "http") {
      const { status, body } = httpError(err);
      assert.equal(status, 409); // daprd: 500
      assert.equal(body.errorCode, "ERR_STATE_TRANSACTION");
    } else {
      assert.equal(err.code, 10); // ABORTED; daprd: INTERNAL (13)
    }
    assert.equal(await client.state.get(store, key("tx")), 2);
  });

  test(`${name}: compatibility: first-write without an ETag on an existing key (Redis)`, async () => {
    await client.state.save(store, [{ key: key("fw"), value: "first" }]);
    const err = await rejected(client.state.save(store, [
      { key: key("fw"), value: "second", options: { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE } },
    ]));
    if (name === "http") {
      const { status, body } = httpError(err);
      assert.equal(status, 409); // daprd's Redis store: 204, and overwrites
      assert.equal(body.errorCode, "ERR_STATE_SAVE");
    } else {
      assert.equal(err.code, 10); // ABORTED; daprd's Redis store: OK
    }
    assert.equal(await client.state.get(store, key("fw")), "first");
  });

  test(`${name}: compatibility: error bodies`, async () => {
    const err = await rejected(client.state.get("no-such-store", "k"));
    if (name === "http") {
      const { status, body } = httpError(err);
      assert.equal(status, 400);
      assert.equal(body.errorCode, "ERR_STATE_STORE_NOT_FOUND");
      assert.match(body.message, /no-such-store/);
      assert.deepEqual(Object.keys(body).sort(), ["errorCode", "message"]); // daprd adds details (ErrorInfo)
    } else {
      assert.equal(err.code, 3); // INVALID_ARGUMENT, as daprd
      assert.ok(err.metadata.get("grpc-status-details-bin").length > 0, "an ErrorInfo in the status details");
    }
  });
}
