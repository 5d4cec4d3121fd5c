// Starts fauxqs (SNS + SQS) for the sessionha local stack, listening on 127.0.0.1 only.
// fauxqs's own CLI binds 0.0.0.0 and logs every request, so we use its buildApp API.
// Usage: node fauxqs.mjs PORT   (0 picks a free port). Prints one line
// "fauxqs listening on 127.0.0.1:PORT" once it accepts connections.
import { buildApp } from "fauxqs";
// Not exported by the package; the path is stable because the version is pinned.
import { SqsStore } from "./node_modules/fauxqs/dist/sqs/sqsStore.js";

const port = Number.parseInt(process.argv[2] ?? "0", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`fauxqs.mjs: invalid port ${JSON.stringify(process.argv[2])}: want 0-65535`);
  process.exit(2);
}
// An empty host makes queue URLs use the request's whole Host header, so that through the
// edge port they point back at the edge (the default, sqs.REGION.localhost, resolves nowhere).
const sqsStore = new SqsStore();
sqsStore.host = "";
const app = buildApp({ logger: false, defaultRegion: process.env.AWS_REGION || "us-east-1", stores: { sqsStore } });
try {
  const address = await app.listen({ port, host: "127.0.0.1" });
  console.log(`fauxqs listening on ${new URL(address).host}`);
} catch (err) {
  console.error(`fauxqs.mjs: listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
}
const stop = async () => {
  await app.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// Exit with our parent: a Go test killed with SIGKILL cannot stop us itself.
process.stdin.on("end", stop);
process.stdin.resume();
