#!/usr/bin/env python3
"""Simulated machine cell served by the third-party `asyncua` OPC UA server (FreeOpcUa).

Binds ONLY to 127.0.0.1. Address space (namespace URI urn:example:cell1, string NodeIds):

  Objects/Cell1 (folder)             ns=<idx>;s=Cell1
    Station10 (object)               ns=<idx>;s=Cell1.Station10
      PartSerial        String       "SN-000001", increments every cycle
      PartComplete      Boolean      pulses True for half a cycle after each new part
      MeasuredDiameter  Double (mm)  25.000 +/- 0.02 (gaussian, clipped)
      GaugeId           String       "GAUGE-07"
      Operator          String       "jdoe"    (writable)
      WorkOrder         String       "WO-24-000123", changes every 20 parts (writable)
      PartCount         Int32        parts since start
      CycleTimeMs       Int32        simulated cycle time
      SpindleTempC      Float        slowly drifting
      LastPartTime      DateTime     UTC timestamp of the last part
      StatusCode        UInt16       0=idle 1=running 2=alarm (alarm ~ every 50th part)
      DiameterTolerance Double[]     [24.98, 25.02] static array

Per cycle the measurement variables are written FIRST, then PartComplete=True
(trigger-last ordering, like a real PLC handshake), then PartComplete=False after
half a cycle.

Security: endpoint always offers SecurityPolicy None; with --secure it also offers
Basic256Sha256 SignAndEncrypt with the self-signed app cert --cert/--key (tests/interop/opcua.sh
creates it with openssl: SAN URI urn:example:cell1:asyncua-server, DNS:localhost, IP:127.0.0.1).
Client certs are NOT validated: asyncua accepts any client cert by default.
Identity: Anonymous (unless --no-anonymous) and Username (--user/--password).
"""
import argparse
import asyncio
import datetime as dt
import logging
import random
import signal

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

NS_URI = "urn:example:cell1"
APP_URI = "urn:example:cell1:asyncua-server"


class CellUserManager:
    def __init__(self, user, password, allow_anonymous):
        self.user, self.password, self.allow_anonymous = user, password, allow_anonymous

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username is None and certificate is None:
            return User(role=UserRole.User, name="anonymous") if self.allow_anonymous else None
        if username is not None:
            if username == self.user and password == self.password:
                return User(role=UserRole.User, name=username)
            return None  # -> BadUserAccessDenied
        return User(role=UserRole.User, name="x509")  # certificate token: accept (test peer)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=4840)
    ap.add_argument("--period", type=float, default=0.5, help="seconds per part")
    ap.add_argument("--secure", action="store_true", help="add Basic256Sha256 SignAndEncrypt endpoint")
    ap.add_argument("--no-anonymous", action="store_true")
    ap.add_argument("--user", default="operator")
    ap.add_argument("--password", default="operator123")
    ap.add_argument("--cert", default="/tmp/peers/pki/asyncua-server/cert.der")
    ap.add_argument("--key", default="/tmp/peers/pki/asyncua-server/key.pem")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    rng = random.Random(args.seed)

    server = Server(user_manager=CellUserManager(args.user, args.password, not args.no_anonymous))
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{args.port}/cell1"
    server.set_endpoint(endpoint)
    server.set_server_name("Cell1 asyncua simulator")
    await server.set_application_uri(APP_URI)

    tokens = [ua.UserNameIdentityToken]
    if not args.no_anonymous:
        tokens.insert(0, ua.AnonymousIdentityToken)
    policies = [ua.SecurityPolicyType.NoSecurity]
    if args.secure:
        await server.load_certificate(args.cert)
        await server.load_private_key(args.key)
        policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
    server.set_security_policy(policies)
    server.set_identity_tokens(tokens)

    idx = await server.register_namespace(NS_URI)
    nid = lambda s: ua.NodeId(s, idx)  # noqa: E731
    cell = await server.nodes.objects.add_folder(nid("Cell1"), ua.QualifiedName("Cell1", idx))
    st = await cell.add_object(nid("Cell1.Station10"), ua.QualifiedName("Station10", idx))

    async def var(name, value, vtype):
        v = await st.add_variable(nid(f"Cell1.Station10.{name}"), ua.QualifiedName(name, idx),
                                  ua.Variant(value, vtype))
        return v

    V = ua.VariantType
    part_serial = await var("PartSerial", "SN-000000", V.String)
    part_complete = await var("PartComplete", False, V.Boolean)
    diameter = await var("MeasuredDiameter", 25.0, V.Double)
    gauge = await var("GaugeId", "GAUGE-07", V.String)
    operator = await var("Operator", "jdoe", V.String)
    work_order = await var("WorkOrder", "WO-24-000123", V.String)
    part_count = await var("PartCount", 0, V.Int32)
    cycle_ms = await var("CycleTimeMs", int(args.period * 1000), V.Int32)
    spindle = await var("SpindleTempC", 41.5, V.Float)
    last_time = await var("LastPartTime", dt.datetime.now(dt.timezone.utc), V.DateTime)
    status = await var("StatusCode", 1, V.UInt16)
    await var("DiameterTolerance", [24.98, 25.02], V.Double)
    try:  # engineering unit "mm" (UNECE code MMT) as a property, like an AnalogItem
        await diameter.add_property(nid("Cell1.Station10.MeasuredDiameter.EngineeringUnits"), "EngineeringUnits",
                                    ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                                                     UnitId=5066068, DisplayName=ua.LocalizedText("mm"),
                                                     Description=ua.LocalizedText("millimetre")),
                                    datatype=ua.NodeId(ua.ObjectIds.EUInformation))
    except Exception as e:  # not essential
        logging.warning("EngineeringUnits property skipped: %s", e)
    for w in (operator, work_order):
        await w.set_writable()
    _ = gauge

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)

    async with server:
        print(f"asyncua OPC UA server listening on {endpoint} ns='{NS_URI}' idx={idx} "
              f"policies={[p.name for p in policies]} anonymous={not args.no_anonymous} user={args.user}", flush=True)
        n, temp, wo = 0, 41.5, 123
        while not stop.is_set():
            n += 1
            if n % 20 == 0:
                wo += 1
                await work_order.write_value(ua.Variant(f"WO-24-{wo:06d}", V.String))
            d = min(25.02, max(24.98, rng.gauss(25.0, 0.007)))
            temp += rng.uniform(-0.05, 0.06)
            if temp > 48:
                temp = 41.5
            await part_serial.write_value(ua.Variant(f"SN-{n:06d}", V.String))
            await diameter.write_value(ua.Variant(round(d, 4), V.Double))
            await part_count.write_value(ua.Variant(n, V.Int32))
            await cycle_ms.write_value(ua.Variant(int(args.period * 1000 + rng.randint(-20, 20)), V.Int32))
            await spindle.write_value(ua.Variant(temp, V.Float))
            await last_time.write_value(ua.Variant(dt.datetime.now(dt.timezone.utc), V.DateTime))
            await status.write_value(ua.Variant(2 if n % 50 == 0 else 1, V.UInt16))
            await part_complete.write_value(ua.Variant(True, V.Boolean))  # trigger last
            try:
                await asyncio.wait_for(stop.wait(), args.period / 2)
            except asyncio.TimeoutError:
                pass
            await part_complete.write_value(ua.Variant(False, V.Boolean))
            try:
                await asyncio.wait_for(stop.wait(), args.period / 2)
            except asyncio.TimeoutError:
                pass
    print("asyncua server stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
