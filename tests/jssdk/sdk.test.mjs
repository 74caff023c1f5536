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
//	SUB_HTTP_APP_PORT,    the app port of a sidecar with --app-protocol http
//	SUB_HTTP_DAPR_PORT    and its HTTP API port: a DaprServer of this file
//	                      (HTTP) is its app
//	SUB_GRPC_APP_PORT,    the same with --app-protocol grpc: a DaprServer
//	SUB_GRPC_DAPR_PORT    with gRPC communication is its app
//
// Every sidecar has the pub/sub "pubsub" (pubsub.redis, one Redis).
import { test } from "node:test";
import assert from "node:assert/strict";
import { DaprClient, DaprServer, CommunicationProtocolEnum, DaprPubSubStatusEnum, HttpMethod, StateConcurrencyEnum } from "@dapr/dapr";

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

// Pub/sub: client.pubsub.publish (over HTTP and gRPC) to a DaprServer's
// server.pubsub.subscribe (HTTP, then gRPC communication) through real
// sidecars and Redis: each event arrives with its data (JSON as an object,
// text as a string) and the pubsubname header; a callback answering RETRY
// gets its event again.
const clients = Object.fromEntries(Object.entries(protocols).map(([name, opts]) =>
  [name, new DaprClient({ daprHost: "127.0.0.1", logger: { level: 0 }, ...opts })]));

for (const [name, proto] of [["http", CommunicationProtocolEnum.HTTP], ["grpc", CommunicationProtocolEnum.GRPC]]) {
  const appPort = process.env[`SUB_${name.toUpperCase()}_APP_PORT`];
  const daprPort = process.env[`SUB_${name.toUpperCase()}_DAPR_PORT`];

  test(`pubsub: a DaprServer (${name}) subscribed with server.pubsub.subscribe`, async () => {
    const topic = `js-${name}`;
    const got = [];
    let arrived;
    const done = new Promise((resolve) => { arrived = resolve; });
    const server = new DaprServer({
      serverHost: "127.0.0.1", serverPort: appPort, communicationProtocol: proto, logger: { level: 0 },
      clientOptions: { daprHost: "127.0.0.1", daprPort, communicationProtocol: CommunicationProtocolEnum.HTTP, logger: { level: 0 } },
    });
    await server.pubsub.subscribe("pubsub", topic, async (data, headers) => {
      got.push({ data, headers });
      const retried = got.filter((g) => g.data?.answer === "RETRY_ONCE").length;
      if (got.some((g) => g.data?.orderId === 1) && got.some((g) => g.data === "hello text") && retried >= 2 &&
        got.some((g) => g.data?.orderId === 10) && got.some((g) => g.data?.orderId === 11) && got.some((g) => g.data === "bulk text")) arrived();
      if (data?.answer === "RETRY_ONCE" && retried === 1) return DaprPubSubStatusEnum.RETRY;
      return DaprPubSubStatusEnum.SUCCESS;
    });
    await server.start();
    try {
      // The sidecar reads the subscription once the app answers.
      for (let i = 0; ; i++) {
        const md = await (await fetch(`http://127.0.0.1:${daprPort}/v1.0/metadata`)).json();
        if ((md.subscriptions ?? []).some((s) => s.topic === topic)) break;
        assert.ok(i < 600, `the sidecar never listed the subscription to ${topic}: ${JSON.stringify(md)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(await clients.http.pubsub.publish("pubsub", topic, { orderId: 1 }), {});
      assert.deepEqual(await clients.grpc.pubsub.publish("pubsub", topic, "hello text"), {});
      assert.deepEqual(await clients.http.pubsub.publish("pubsub", topic, { orderId: 3, answer: "RETRY_ONCE" }), {});
      // Bulk publish, each entry its own event.
      assert.deepEqual(await clients.http.pubsub.publishBulk("pubsub", topic, [{ orderId: 10 }, "bulk text"]), { failedMessages: [] });
      assert.deepEqual(await clients.grpc.pubsub.publishBulk("pubsub", topic, [{ orderId: 11 }]), { failedMessages: [] });
      let timer;
      await Promise.race([done, new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(got)}`)), 30000);
      })]);
      clearTimeout(timer);
      const order = got.find((g) => g.data?.orderId === 1);
      assert.deepEqual(order.data, { orderId: 1 });
      assert.equal(order.headers.pubsubname, "pubsub");
      assert.equal(got.filter((g) => g.data?.orderId === 1).length, 1);
    } finally {
      await server.stop();
    }
  });
}

for (const [name, client] of Object.entries(clients)) {
  test(`${name}: pubsub: a bulk publish to an unknown pub/sub reports every message failed`, async () => {
    const res = await client.pubsub.publishBulk("no-such-pubsub", "orders", [{ orderId: 1 }, "two"]);
    assert.equal(res.failedMessages.length, 2);
    assert.match(String(res.failedMessages[0].error?.message ?? res.failedMessages[0].error?.details ?? res.failedMessages[0].error), /no-such-pubsub/);
  });

  test(`${name}: pubsub: publishing to an unknown pub/sub gives daprd's error`, async () => {
    const err = await rejected(client.pubsub.publish("no-such-pubsub", "orders", { orderId: 1 }));
    if (name === "http") {
      const { status, body } = httpError(err);
      assert.equal(status, 404);
      assert.equal(body.errorCode, "ERR_PUBSUB_NOT_FOUND");
      assert.match(body.message, /no-such-pubsub/);
    } else {
      assert.equal(err.code, 3); // INVALID_ARGUMENT, as daprd
      assert.match(err.details, /no-such-pubsub/);
    }
  });
}
