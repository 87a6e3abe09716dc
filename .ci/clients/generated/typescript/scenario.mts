// One scenario through a TypeScript client made from the served OpenAPI document:
// openapi-typescript writes schema.d.ts from it, openapi-fetch calls the service with those
// types, and `tsc --strict` checks this file against them before node runs it.
//
//   node dist/scenario.mjs <base-url> <write-key> <read-key>
//
// Records with a write key, replays the key, reads one route, its days and months and several
// routes, and gets each documented error back typed as ErrorBody: 400, 401, 403, 404 (the
// `default` answer), 422. Prints one line per step; exits non-zero at the first that fails.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type ErrorBody = components["schemas"]["ErrorBody"];
type ErrorCode = components["schemas"]["ErrorCode"];

const [base, writeKey, readKey] = process.argv.slice(2);
if (!base || !writeKey || !readKey) {
  throw new Error("usage: scenario.mjs <base-url> <write-key> <read-key>");
}

function step(name: string, ok: boolean, detail: unknown): void {
  console.log(`${ok ? "ok  " : "FAIL"} ${name}: ${JSON.stringify(detail)}`);
  if (!ok) process.exit(1);
}

function client(key: string, baseUrl: string = base!) {
  return createClient<paths, "application/json">({
    baseUrl,
    headers: { Authorization: `Bearer ${key}` },
  });
}

function code(error: ErrorBody | undefined): ErrorCode | undefined {
  return error?.error;
}

const writer = client(writeKey);
const reader = client(readKey);
const route = `TS${1000 + Math.floor(Math.random() * 9000)}`;
const key = crypto.randomUUID();

const first = await writer.POST("/transactions/{route}", {
  params: { path: { route }, header: { "Idempotency-Key": key } },
});
step("record with a key", first.data?.transactions === 1, first.data);
const again = await writer.POST("/transactions/{route}", {
  params: { path: { route }, header: { "Idempotency-Key": key } },
});
step(
  "replay the key",
  again.data?.transactions === 1 && again.response.headers.get("idempotent-replayed") === "true",
  again.data,
);

const one = await reader.GET("/transactions/{route}", { params: { path: { route } } });
step("read one route", one.data?.transactions === 1, one.data);
const daily = await reader.GET("/transactions/{route}/daily", { params: { path: { route } } });
const days = daily.data?.days ?? [];
step(
  "read its days",
  days.length === 7 && days.reduce((sum, day) => sum + day.transactions, 0) === 1,
  daily.data,
);
const monthly = await reader.GET("/transactions/{route}/monthly", {
  params: { path: { route } },
});
const months = monthly.data?.months ?? [];
step("read its months", months.reduce((sum, m) => sum + m.transactions, 0) === 1, monthly.data);
const many = await reader.GET("/transactions", {
  params: { query: { route: [route, "LA0001"] } },
});
const listed = (many.data?.routes ?? []).map((c) => `${c.route}=${c.transactions}`).join(",");
step("read several routes", listed === `${route}=1,LA0001=0`, many.data);

const bad = await reader.GET("/transactions/{route}", {
  params: { path: { route: "not-a-route" } },
});
step("400 typed as ErrorBody", bad.response.status === 400 && code(bad.error) === "invalid_route", bad.error);
const stranger = client(`fck_${"x".repeat(43)}`);
const unknown = await stranger.GET("/transactions/{route}", { params: { path: { route } } });
step("401 typed as ErrorBody", unknown.response.status === 401 && code(unknown.error) === "unauthorized", unknown.error);
const forbidden = await reader.POST("/transactions/{route}", { params: { path: { route } } });
step("403 typed as ErrorBody", forbidden.response.status === 403 && code(forbidden.error) === "forbidden", forbidden.error);
const lost = client(readKey, `${base}/v0`);
const missing = await lost.GET("/transactions/{route}", { params: { path: { route } } });
step("404 typed as ErrorBody (the default answer)", missing.response.status === 404 && code(missing.error) === "not_found", missing.error);
const reused = await writer.POST("/transactions/{route}", {
  params: { path: { route: "LA0001" }, header: { "Idempotency-Key": key } },
});
step("422 typed as ErrorBody", reused.response.status === 422 && code(reused.error) === "idempotency_key_reused", reused.error);
