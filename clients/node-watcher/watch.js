#!/usr/bin/env node
// Follows one order with orders.v1.OrderService/WatchOrder and prints one JSON line per
// update, each once; exits 0 after the terminal update (COMPLETED or CANCELLED).
//
//   node watch.js 127.0.0.1:50051 ORD7KQ2M9X4B1ZP0W3E
//
// When the stream breaks (server restart, network), it watches again with
// after_sequence = the last sequence it printed, so the server replays what was missed.
// ORDERS_TOKEN is sent as a bearer token; ORDERS_TLS_CA (a PEM file) turns TLS on.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const TERMINAL = new Set(['ORDER_STATUS_COMPLETED', 'ORDER_STATUS_CANCELLED']);
// "The connection or the server went away": watch again. Other codes are answers.
const RESUMABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.UNKNOWN]);
const MAX_RETRIES = 10;

function loadService() {
  const definition = protoLoader.loadSync(path.join(PROTO_ROOT, 'orders', 'v1', 'orders.proto'), {
    includeDirs: [PROTO_ROOT],
    longs: String, // int64 as strings, as in the protobuf JSON form
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).orders.v1.OrderService;
}

function isoTime(ts) {
  if (!ts) return null;
  const millis = Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
  return new Date(millis).toISOString();
}

// The update in the protobuf JSON form's shape (camelCase, int64 strings, RFC 3339 times).
function toJson(update) {
  const order = { ...update.order };
  order.createdOn = isoTime(order.createdOn);
  order.updatedOn = isoTime(order.updatedOn);
  return {
    order,
    progress: update.progress,
    event: update.event,
    sequence: update.sequence,
    detail: update.detail,
    recordedOn: isoTime(update.recordedOn),
  };
}

function credentials() {
  const ca = process.env.ORDERS_TLS_CA;
  return ca ? grpc.credentials.createSsl(fs.readFileSync(ca)) : grpc.credentials.createInsecure();
}

function watch(address, ref) {
  const OrderService = loadService();
  const client = new OrderService(address, credentials(), {
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 2000,
  });
  const metadata = new grpc.Metadata();
  if (process.env.ORDERS_TOKEN) metadata.set('authorization', `Bearer ${process.env.ORDERS_TOKEN}`);

  let last = null; // the last sequence printed
  let retries = 0;

  function finish(code, message) {
    if (message) process.stderr.write(`node-watcher: ${message}\n`);
    client.close();
    process.exitCode = code;
  }

  function again(reason) {
    if (retries >= MAX_RETRIES) return finish(1, `giving up after ${retries} retries: ${reason}`);
    retries += 1;
    process.stderr.write(`node-watcher: stream lost (${reason}), resuming\n`);
    setTimeout(open, Math.min(250 * 2 ** retries, 5000));
  }

  function open() {
    const request = { orderRefNo: ref };
    if (last !== null) request.afterSequence = String(last);
    const call = client.WatchOrder(request, metadata);
    let done = false;
    call.on('data', (update) => {
      const sequence = Number(update.sequence);
      if (done || (last !== null && sequence <= last)) return; // seen before a reconnection
      process.stdout.write(JSON.stringify(toJson(update)) + '\n');
      last = sequence;
      retries = 0;
      if (TERMINAL.has(update.order.status)) {
        done = true;
        call.cancel();
        finish(0);
      }
    });
    call.on('error', (err) => {
      if (done) return; // our own cancel after the terminal update
      done = true;
      const name = grpc.status[err.code] || String(err.code);
      if (RESUMABLE.has(err.code)) again(name);
      else finish(1, `${name}: ${err.details}`);
    });
    call.on('end', () => {
      if (!done) {
        done = true;
        again('stream ended before the order did');
      }
    });
  }

  open();
}

function main() {
  const [address, ref] = process.argv.slice(2);
  if (!address || !ref) {
    process.stderr.write('usage: node watch.js ADDRESS REF\n');
    process.exit(2);
  }
  watch(address, ref);
}

main();
