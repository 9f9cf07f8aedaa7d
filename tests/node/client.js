// Calls a running evorec PreprocessService from Node.js, with stubs built at run time from
// the contracts in protos/ (as any backend in another language would), and prints what it
// got as one JSON line for tests/test_node_client.py to check.
//
//   node client.js 127.0.0.1:50051
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const target = process.argv[2];
const protoRoot = path.resolve(__dirname, "..", "..", "protos");
const healthProto = require.resolve("grpc-health-check/proto/health/v1/health.proto");

const definition = protoLoader.loadSync(
  [path.join(protoRoot, "evorec/v1/preprocess.proto"), healthProto],
  { includeDirs: [protoRoot], keepCase: true, longs: String, enums: String, defaults: true },
);
const loaded = grpc.loadPackageDefinition(definition);
const credentials = grpc.credentials.createInsecure();
const health = new loaded.grpc.health.v1.Health(target, credentials);
const preprocess = new loaded.evorec.v1.PreprocessService(target, credentials);

function deadline() {
  return new Date(Date.now() + 5000);
}

function call(client, method, request) {
  return new Promise((resolve) => {
    client[method](request, { deadline: deadline() }, (error, response) => {
      resolve(
        error
          ? { code: grpc.status[error.code], details: error.details }
          : { code: "OK", response },
      );
    });
  });
}

async function main() {
  const result = {
    health: await call(health, "Check", { service: "evorec.v1.PreprocessService" }),
    normalize: await call(preprocess, "NormalizeText", {
      texts: ["Hello, <b>World</b>!"],
      options: { remove_stopwords: false },
    }),
  };
  console.log(JSON.stringify(result));
  health.close();
  preprocess.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
