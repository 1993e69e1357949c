// lossd from Node.js: mse, and a cross_entropy gradient, with tensors as raw little-endian bytes.
// The .proto is loaded at run time (no generated code). LOSSD_ADDRESS picks the server.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = process.env.LOSSD_PROTOS || path.join(__dirname, "..", "..", "protos");
const ADDRESS = process.env.LOSSD_ADDRESS || "localhost:50051";

const definition = protoLoader.loadSync(path.join(PROTOS, "lossd", "v1", "loss_service.proto"), {
  includeDirs: [PROTOS],
  keepCase: true, // field names as in the .proto: raw_data, grad_output
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: true,
});
const lossd = grpc.loadPackageDefinition(definition).lossd.v1;
const client = new lossd.LossService(ADDRESS, grpc.credentials.createInsecure());

// A Tensor message: dtype, shape, and the typed array's bytes (little-endian on every common CPU).
function tensor(dtype, shape, typed) {
  return { dtype, shape, raw_data: Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength) };
}

// The float32 values of a reply Tensor (copied out: a Buffer need not be 4-byte aligned).
function floats(t) {
  const bytes = Uint8Array.from(t.raw_data);
  return Array.from(new Float32Array(bytes.buffer));
}

function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10000 }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function main() {
  const pred = new Float32Array([2.5, 0.0, 2.0, 8.0]);
  const truth = new Float32Array([3.0, -0.5, 2.0, 7.0]);
  const mse = await call("Compute", {
    loss: "mse",
    inputs: { input: tensor("DTYPE_FLOAT32", [4], pred), target: tensor("DTYPE_FLOAT32", [4], truth) },
  });
  console.log(`mse ${floats(mse.loss)[0].toFixed(6)}`);

  const logits = new Float32Array([2.0, 1.0, 0.1, 0.5, 2.5, 0.3]);
  const labels = new BigInt64Array([0n, 1n]);
  const ce = await call("Gradient", {
    loss: "cross_entropy",
    inputs: { input: tensor("DTYPE_FLOAT32", [2, 3], logits), target: tensor("DTYPE_INT64", [2], labels) },
  });
  const grad = floats(ce.gradients.input).map((g) => g.toFixed(6));
  console.log(`cross_entropy ${floats(ce.loss)[0].toFixed(6)}`);
  console.log(`grad_input ${grad.join(" ")}`);
  client.close();
}

main().catch((err) => {
  console.error(`lossd call failed: ${err.code} ${err.details || err.message}`);
  process.exit(1);
});
