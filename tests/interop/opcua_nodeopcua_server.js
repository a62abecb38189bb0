#!/usr/bin/env node
// Simulated machine cell served by the third-party `node-opcua` OPC UA server (pinned 2.182.2:
// the last release that supports Node 20). Binds ONLY to 127.0.0.1.
// Same address space as opcua_asyncua_server.py: namespace urn:example:cell1, string NodeIds
// ns=<idx>;s=Cell1.Station10.<Name>, so check_opcua.py works against both.
// Endpoint opc.tcp://127.0.0.1:PORT/cell1 ; policies None + Basic256Sha256/SignAndEncrypt
// (server cert/key from <pki-dir>/own/{cert,key}.pem, made by tests/interop/opcua.sh with openssl;
// unknown client certs auto-accepted);
// identity Anonymous (unless --no-anonymous) + Username operator/operator123.
// Usage: node opcua_nodeopcua_server.js [--port 4842] [--period 0.5] [--no-anonymous]
"use strict";
const path = require("path");
const {
  OPCUAServer, OPCUACertificateManager, Variant, DataType, SecurityPolicy, MessageSecurityMode,
} = require("node-opcua");

const argv = process.argv.slice(2);
const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
const port = parseInt(opt("--port", "4842"), 10);
const period = parseFloat(opt("--period", "0.5")) * 1000;
const allowAnonymous = !argv.includes("--no-anonymous");
const user = opt("--user", "operator"), password = opt("--password", "operator123");
const pkiRoot = opt("--pki-dir", "/tmp/peers/pki/node-opcua-server");

function gauss() { // Box-Muller
  let u = 0, v = 0; while (u === 0) u = Math.random(); while (v === 0) v = Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

(async () => {
  const serverCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: true, rootFolder: path.join(pkiRoot, "PKI"),
  });
  const userCertificateManager = new OPCUACertificateManager({
    automaticallyAcceptUnknownCertificate: true, rootFolder: path.join(pkiRoot, "UserPKI"),
  });
  const server = new OPCUAServer({
    port, host: "127.0.0.1", hostname: "127.0.0.1", resourcePath: "/cell1",
    serverCertificateManager, userCertificateManager,
    certificateFile: path.join(pkiRoot, "own", "cert.pem"), privateKeyFile: path.join(pkiRoot, "own", "key.pem"),
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous,
    userManager: { isValidUser: (u, p) => u === user && p === password },
    buildInfo: { productName: "Cell1 node-opcua simulator", manufacturerName: "Example", softwareVersion: "1.0" },
    serverInfo: { applicationUri: "urn:example:cell1:node-opcua-server", productUri: "urn:example:cell1:node-opcua" },
  });
  await server.initialize();
  const as = server.engine.addressSpace;
  const ns = as.registerNamespace("urn:example:cell1");
  const cell = ns.addFolder(as.rootFolder.objects, { browseName: "Cell1", nodeId: "s=Cell1" });
  const st = ns.addObject({ organizedBy: cell, browseName: "Station10", nodeId: "s=Cell1.Station10" });
  const vars = {};
  const add = (name, dataType, value, writable = false, extra = {}) => {
    vars[name] = ns.addVariable({
      componentOf: st, browseName: name, nodeId: `s=Cell1.Station10.${name}`, dataType,
      accessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      userAccessLevel: writable ? "CurrentRead | CurrentWrite" : "CurrentRead",
      value: new Variant({ dataType: DataType[dataType], value, ...extra }),
      minimumSamplingInterval: 50,
    });
  };
  add("PartSerial", "String", "SN-000000");
  add("PartComplete", "Boolean", false);
  add("MeasuredDiameter", "Double", 25.0);
  add("GaugeId", "String", "GAUGE-07");
  add("Operator", "String", "jdoe", true);
  add("WorkOrder", "String", "WO-24-000123", true);
  add("PartCount", "Int32", 0);
  add("CycleTimeMs", "Int32", Math.round(period));
  add("SpindleTempC", "Float", 41.5);
  add("LastPartTime", "DateTime", new Date());
  add("StatusCode", "UInt16", 1);
  vars.DiameterTolerance = ns.addVariable({
    componentOf: st, browseName: "DiameterTolerance", nodeId: "s=Cell1.Station10.DiameterTolerance",
    dataType: "Double", valueRank: 1, arrayDimensions: [2],
    value: new Variant({ dataType: DataType.Double, arrayType: 1 /* Array */, value: [24.98, 25.02] }),
  });
  const set = (name, dataType, value) => vars[name].setValueFromSource(new Variant({ dataType, value }));

  await server.start();
  console.log(`node-opcua server listening on ${server.getEndpointUrl()} ns=urn:example:cell1 ` +
    `idx=${ns.index} anonymous=${allowAnonymous} user=${user}`);

  let n = 0, temp = 41.5, wo = 123;
  const tick = () => {
    n++;
    if (n % 20 === 0) { wo++; set("WorkOrder", DataType.String, `WO-24-${String(wo).padStart(6, "0")}`); }
    const d = Math.min(25.02, Math.max(24.98, 25.0 + 0.007 * gauss()));
    temp += Math.random() * 0.11 - 0.05; if (temp > 48) temp = 41.5;
    set("PartSerial", DataType.String, `SN-${String(n).padStart(6, "0")}`);
    set("MeasuredDiameter", DataType.Double, Math.round(d * 1e4) / 1e4);
    set("PartCount", DataType.Int32, n);
    set("CycleTimeMs", DataType.Int32, Math.round(period + Math.random() * 40 - 20));
    set("SpindleTempC", DataType.Float, temp);
    set("LastPartTime", DataType.DateTime, new Date());
    set("StatusCode", DataType.UInt16, n % 50 === 0 ? 2 : 1);
    set("PartComplete", DataType.Boolean, true); // trigger last
    setTimeout(() => set("PartComplete", DataType.Boolean, false), period / 2);
  };
  const timer = setInterval(tick, period);
  tick();
  const shutdown = async () => {
    clearInterval(timer);
    await server.shutdown(200);
    console.log("node-opcua server stopped");
    process.exit(0);
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
})().catch((err) => { console.error(err); process.exit(1); });
