"""The REST API's contract as an OpenAPI 3.0.3 document, served at /api/v1/openapi.json.

The constants here are the ones rest.py enforces, so the document cannot drift from
the server on names, limits or paths; tests check both directions.
"""
from __future__ import annotations

from typing import Any

from msp_controller.model.config import SHORT_NAME  # uplink (ISP) names

API_PREFIX = "/api/v1"
METRICS_PATH = "/metrics"  # Prometheus text format, outside the JSON API
NAME_PATTERN = "^[A-Za-z0-9_.-]+$"  # homenet, class and uplink names
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32  # a policy needs about 5; deeper bodies are hostile or broken

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _number(minimum: float, maximum: float) -> Schema:
    return {"type": "number", "minimum": minimum, "maximum": maximum}


def _strict(properties: dict[str, Schema], required: list[str] | None = None,
            description: str = "") -> Schema:
    """A request object: unknown keys are errors, so typos do not pass silently."""
    schema: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    return schema


def _loose(properties: dict[str, Schema], required: list[str], description: str = "") -> Schema:
    """A response object: clients must ignore keys they do not know (room to grow)."""
    schema: Schema = {"type": "object", "properties": properties, "required": required}
    if description:
        schema["description"] = description
    return schema


# --- request: the traffic policy -----------------------------------------------------------

def _policy_schemas() -> dict[str, Schema]:
    # Mirrors policy.py's parser (its docstring is the reference): what the schema cannot say
    # (ISPs of this homenet, sources inside its prefixes, classes that overlap) is a 400 there.
    isp: Schema = {"type": "string", "pattern": SHORT_NAME.pattern, "description": "an uplink (ISP) of this homenet"}
    order: Schema = {"type": "array", "items": isp, "minItems": 1, "uniqueItems": True,
                     "description": "most preferred first; unlisted ISPs are never used"}
    port: Schema = {"oneOf": [
        {"type": "integer", "minimum": 1, "maximum": 65535},
        {"type": "string", "pattern": "^[0-9]{1,5}-[0-9]{1,5}$",
         "description": "an inclusive range low-high, e.g. \"16384-32767\""},
    ]}
    ports: Schema = {"type": "array", "items": port, "minItems": 1, "maxItems": 32,
                     "description": "needs protocol tcp or udp; ranges in one list must not overlap"}
    selections = {"failover": "FailoverSelection", "balance": "BalanceSelection", "sla": "SlaSelection"}
    return {
        "Policy": _strict({
            "classes": {"type": "array", "items": _ref("TrafficClass"), "maxItems": 64,
                        "description": "no packet may match two classes"},
            "default": _ref("DefaultClass"),
            "damping": _ref("Damping"),
            "rates": {"type": "object", "additionalProperties": _ref("IspRates"),
                      "description": "ISP -> its access rates; the MSP shapes just below them at both ends"},
        }, required=["default"], description="A homenet's traffic policy: classes of traffic "
                                              "and how each direction of each picks its ISP."),
        "Damping": _strict({
            "recover_s": {**_number(0, 3600), "default": 2,
                          "description": "up time a path needs after one failure before it carries traffic again"},
            "half_life_s": {**_number(1, 3600), "default": 15,
                            "description": "a path's failure count (penalty) halves this often while it is up"},
            "max_hold_s": {**_number(0, 3600), "default": 30,
                           "description": "the longest up time ever needed; at least recover_s, or 0: no damping"},
        }, description="Flap damping, for every path of the homenet: each failure adds 1 to the path's "
                       "penalty; a path that failed is used after the others until it has been up for "
                       "recover_s + half_life_s x log2(penalty) seconds (at most max_hold_s)."),
        "TrafficClass": _strict({
            "name": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$", "not": {"enum": ["default"]}},
            "match": _ref("Match"),
            "egress": _ref("PathSelection"),
            "ingress": _ref("PathSelection"),
            "qos": _ref("ClassQos"),
        }, required=["name", "match", "egress", "ingress"]),
        "DefaultClass": _strict({
            "egress": _ref("PathSelection"),
            "ingress": _ref("PathSelection"),
            "qos": _ref("ClassQos"),
        }, required=["egress", "ingress"], description="Traffic that matches no class."),
        "ClassQos": _strict({
            "dscp": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 63},
                               {"type": "string", "enum": ["trust"]}], "default": "trust",
                     "description": "set this DSCP on the class's packets (upstream at the MSPMB, downstream "
                                    "at the edge), or keep the host's; it also names the class's queue"},
            "priority": {"oneOf": [{"type": "string", "enum": ["realtime"]},
                                   {"type": "integer", "minimum": 1, "maximum": 100}], "default": 10,
                         "description": "strict priority (needs a set dscp), or a weighted share of what is left"},
            "max_rate_kbps": {"type": "integer", "minimum": 8, "maximum": 100000000,
                              "description": "an OpenFlow meter drops what exceeds this, each way"},
        }, description="Marking, priority and rate limit of a class, both ways (msp_controller/model/qos.py)."),
        "IspRates": _strict({
            "down_kbps": {"type": "integer", "minimum": 8, "maximum": 100000000, "nullable": True},
            "up_kbps": {"type": "integer", "minimum": 8, "maximum": 100000000, "nullable": True},
        }, description="An ISP's access rates; the MSP shapes a little below them at both ends (null: not shaped)."),
        "Match": {**_strict({
            "protocol": {"oneOf": [
                {"type": "string", "enum": ["tcp", "udp", "icmp", "icmpv6"]},
                {"type": "integer", "minimum": 0, "maximum": 255, "description": "an IP protocol number"},
            ]},
            "src_ports": {**ports, "description": "local (homenet side) ports; " + ports["description"]},
            "dst_ports": {**ports, "description": "remote ports; " + ports["description"]},
            "dscp": {"type": "integer", "minimum": 0, "maximum": 63},
            "sources": {"type": "array", "minItems": 1, "maxItems": 32,
                        "items": {"type": "string", "description": "an IPv4 or IPv6 prefix inside the homenet"}},
        }, description="Packets as they leave the homenet; incoming ones match the mirror image."),
            "minProperties": 1},
        "PathSelection": {
            "oneOf": [_ref(name) for name in selections.values()],
            "discriminator": {"propertyName": "mode",
                              "mapping": {mode: f"#/components/schemas/{name}" for mode, name in selections.items()}},
        },
        "FailoverSelection": _strict({
            "mode": {"type": "string", "enum": ["failover"]},
            "order": order,
        }, required=["mode", "order"], description="The first live ISP in order."),
        "BalanceSelection": _strict({
            "mode": {"type": "string", "enum": ["balance"]},
            "weights": {"type": "object", "minProperties": 1,
                        "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 100},
                        "description": "ISP -> relative share of flows"},
        }, required=["mode", "weights"], description="Live ISPs share flows by weight."),
        "SlaSelection": {**_strict({
            "mode": {"type": "string", "enum": ["sla"]},
            "order": order,
            "max_rtt_ms": _number(1, 10000),
            "max_loss_pct": _number(0, 100),
            "max_jitter_ms": _number(0, 10000),
            "hysteresis_pct": {**_number(0, 100), "default": 20,
                               "description": "a path that broke the SLA must beat it by this much to return"},
            "recover_s": {**_number(0, 3600), "default": 10,
                          "description": "... for this long"},
        }, required=["mode", "order"], description="The first ISP in order whose path meets every threshold."),
            "anyOf": [{"required": [key]} for key in ("max_rtt_ms", "max_loss_pct", "max_jitter_ms")]},
    }


# --- responses ------------------------------------------------------------------------------

def _status_schemas() -> dict[str, Schema]:
    nullable_number: Schema = {"type": "number", "nullable": True, "description": "null until measured"}
    counter: Schema = {"type": "integer", "minimum": 0}
    nullable_path: Schema = {"type": "string", "nullable": True,
                             "description": "isp@edge (balance: several, joined by ' + '), null if no path is live"}
    path_state: Schema = {"type": "string", "enum": ["up", "down", "unknown"],
                          "description": "up: both tunnel ends report the path live; down: an end reports it "
                                         "dead; unknown: an end has not reported (its box is not connected, "
                                         "or has not described the port yet)"}
    end_state: Schema = {"type": "string", "enum": ["up", "down", "unknown"],
                         "description": "this end's tunnel port as its switch last reported it; unknown: the "
                                        "switch is not connected or has not reported the port"}
    active_state: Schema = {**path_state, "nullable": True,
                            "description": "what is known of the path(s) the class uses now: unknown means the "
                                           "controller has chosen them but cannot see that they work (the "
                                           "data plane still uses them); null when the class has no path"}
    paths_by_state: Schema = _loose({state: {"type": "integer", "minimum": 0} for state in ("up", "down", "unknown")},
                                    required=["up", "down", "unknown"],
                                    description="how many tunnel paths of all homenets are in each state")
    return {
        "Error": _loose({
            "error": _loose({
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "where": {"type": "string", "description": "the offending part of the request body, "
                                                           "e.g. classes[0].egress.order"},
                "message": {"type": "string"},
            }, required=["status", "message"]),
        }, required=["error"]),
        "Health": _loose({
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "switches": {"type": "object", "additionalProperties": {"type": "object"},
                         "description": "datapath id (hex) -> its state: every switch up to 1,000 of them, "
                                        "beyond only those not reconciled (switches_listed; all: GET /switches)"},
            "switches_listed": {"type": "string", "enum": ["all", "not_reconciled"]},
            "switch_counts": {"type": "object", "description": "role -> reconciled / connected / disconnected -> "
                              "switches (connected: not reconciled yet)",
                              "additionalProperties": {"type": "object",
                                                       "additionalProperties": {"type": "integer"}}},
            "bgp": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "BGP neighbour address -> session state (established, active, ...)"},
            "edge_shapers": {"type": "object", "description": "edge -> its shaper as its requests showed it: "
                             "seen_s_ago (null: not since the controller started), applied_version, "
                             "versions_behind, silent (no request for 10 s: the status is degraded)",
                             "additionalProperties": {"type": "object", "properties": {
                                 "seen_s_ago": {"type": "number", "nullable": True},
                                 "applied_version": {"type": "integer", "nullable": True},
                                 "versions_behind": {"type": "integer", "nullable": True},
                                 "silent": {"type": "boolean"}}}},
            "uptime_s": {"type": "number", "minimum": 0},
            "paths": paths_by_state,
        }, required=["status", "switches", "uptime_s"]),
        "HomenetSummary": _loose({
            "name": {"type": "string"},
            "active_egress": nullable_path,
            "active_ingress": nullable_path,
            "active_egress_state": active_state,
            "active_ingress_state": active_state,
            "live_paths": {"type": "array", "items": {"type": "string"},
                           "description": "the paths known live (state up)"},
            "path_states": {"type": "object", "additionalProperties": path_state,
                            "description": "isp@edge -> the path's state"},
        }, required=["name"]),
        "Homenet": _loose({
            "name": {"type": "string"},
            "prefixes": {"type": "array", "items": {"type": "string"}},
            "uplinks": {"type": "array", "items": {}},
            "paths": {"type": "array", "items": _ref("PathStatus")},
            "classes": {"type": "array", "items": _ref("ClassStatus")},
            "announced_at": {"type": "array", "items": {"type": "string"},
                             "description": "edges announcing the homenet's prefixes by BGP now"},
        }, required=["paths", "classes"]),
        "PathStatus": _loose({
            "path": {"type": "string", "description": "isp@edge"},
            "isp": {"type": "string"},
            "edge": {"type": "string"},
            "state": path_state,
            "live": {"type": "boolean", "description": "true only when the path is known live (state up); "
                                                       "false when it is down or unknown"},
            "ends": _loose({"mspmb": end_state, "edge": end_state}, required=["mspmb", "edge"],
                           description="each tunnel end as its switch reports it"),
            "rtt_ms": nullable_number,
            "jitter_ms": nullable_number,
            "loss_pct": nullable_number,
            "tx_packets": counter,
            "tx_bytes": counter,
            "rx_packets": counter,
            "rx_bytes": counter,
        }, required=["path", "isp", "edge", "live"]),
        "ClassStatus": _loose({
            "name": {"type": "string"},
            "egress": nullable_path,
            "ingress": nullable_path,
            "egress_state": active_state,
            "ingress_state": active_state,
        }, required=["name"]),
        "HomenetSpec": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "id", "datapath_id", "prefixes", "lan_ports", "lan_ipv4", "uplinks",
                         "egress_order", "ingress_order"],
            "description": "A homenet, as a [[homenets]] table of the controller's config "
                           "(msp-check-config validates the same fields the same way). What the "
                           "schema cannot say (clashes with other homenets, edges that exist, "
                           "addresses inside the prefixes) is a 400 naming the field.",
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "id": {"type": "integer", "minimum": 1, "maximum": 65535,
                       "description": "VXLAN key; unique among homenets"},
                "datapath_id": {"type": "integer", "minimum": 1, "description": "the MSPMB's bridge"},
                "prefixes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "lan_ports": {"type": "array", "items": {"type": "string"}},
                "lan_ipv4": {"type": "string"}, "lan_ipv6": {"type": "string"},
                "gateway_mac": {"type": "string"},
                "edge": {"type": "string"}, "edges": {"type": "array", "items": {"type": "string"}},
                "backup_prepend": {"type": "integer", "minimum": 0, "maximum": 10},
                "autoconf": {
                    "type": "object", "additionalProperties": False,
                    "description": "DHCPv4 and router advertisements for the hosts (all optional; "
                                   "default pool: the upper half of lan_ipv4's subnet)",
                    "properties": {"enabled": {"type": "boolean"}, "slaac": {"type": "boolean"},
                                   "pool_start": {"type": "string"}, "pool_end": {"type": "string"},
                                   "lease_time_s": {"type": "integer", "minimum": 60, "maximum": 604800},
                                   "mtu": {"type": "integer", "minimum": 1280, "maximum": 9000},
                                   "ra_interval_s": {"type": "integer", "minimum": 4, "maximum": 1800},
                                   "dns": {"type": "array", "items": {"type": "string"}, "maxItems": 8}}},
                "egress_order": {"type": "array", "items": {"type": "string"}},
                "ingress_order": {"type": "array", "items": {"type": "string"}},
                "uplinks": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "required": ["name", "port", "underlay_datapath_id"],
                    "properties": {"name": {"type": "string", "pattern": SHORT_NAME.pattern},
                                   "port": {"type": "string"},
                                   "underlay_datapath_id": {"type": "integer", "minimum": 1}}}},
            }},
        "HomenetResult": _loose({
            "applied": {"type": "boolean", "description": "true: in the data plane when the response was sent"},
            "homenet": _ref("Homenet"),
            "deleted": {"type": "string"},
            "applied_ms": {"type": "number", "minimum": 0},
            "pending": {"type": "array", "items": {"type": "string"}},
        }, required=["applied"]),
        "PolicyResult": _loose({
            "applied": {"type": "boolean", "description": "true: in the data plane when the response was sent"},
            "policy": _ref("Policy"),
            "applied_ms": {"type": "number", "minimum": 0},
            "pending": {"type": "array", "items": {"type": "string"},
                        "description": "switches not connected, which get the policy when they connect"},
        }, required=["applied"]),
    }


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR_RESPONSES = {
    "400": "the request body is not JSON, not an object, or not a valid policy",
    "401": "no token, or an unknown one (the API has tokens configured)",
    "403": "the token's role may not do this (a homenet's owner: only that homenet and its policy)",
    "404": "no such homenet, or no such path",
    "405": "method not allowed here (see the Allow header)",
    "411": "a chunked request body on a server that cannot read one: send Content-Length",
    "413": f"request body larger than {MAX_BODY_BYTES} bytes",
    "415": "Content-Type is not application/json",
    "500": "a bug in the controller (logged there)",
}


def _error_responses() -> dict[str, Schema]:
    responses = {f"E{code}": _json(_ref("Error"), text) for code, text in ERROR_RESPONSES.items()}
    responses["E405"]["headers"] = {"Allow": {"description": "the methods this path accepts",
                                              "schema": {"type": "string"}}}
    return responses


def _responses(ok: dict[str, Schema], errors: list[str]) -> Schema:
    responses: Schema = dict(ok)
    for code in errors:
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    return responses


def _name_parameter() -> Schema:
    return {"name": "name", "in": "path", "required": True, "description": "the homenet's name",
            "schema": {"type": "string", "pattern": NAME_PATTERN}}


def _get(operation_id: str, summary: str, ok: Schema, named: bool, public: bool = False) -> Schema:
    operation: Schema = {
        "operationId": operation_id, "summary": summary,
        "responses": _responses({"200": ok}, ([] if public else ["401", "403"]) + (["404"] if named else [])
                                + ["405", "500"]),
    }
    if public:
        operation["security"] = []
    return operation


def _change(operation_id: str, summary: str, ok: str, ok_text: str, body: bool = False,
            named: bool = False) -> Schema:
    operation: Schema = {
        "operationId": operation_id, "summary": summary,
        "responses": _responses({
            ok: _json(_ref("HomenetResult"), ok_text),
            "202": _json(_ref("HomenetResult"), "accepted and stored; applied when the pending switches connect"),
        }, ["400", "401", "403"] + (["404"] if named else []) + ["405", "411", "413", "415", "500"]),
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref("HomenetSpec")}}}
    return operation


def _edge_shaping_schema() -> Schema:
    commands = {"type": "array", "items": {"type": "array", "items": {"type": "string"}},
                "description": "tc arguments, one command each"}
    return {
        "type": "object", "required": ["version", "full", "homenets"],
        "properties": {
            "version": {"type": "integer", "description": "pass it as `since` next time"},
            "full": {"type": "boolean", "description": "true: every homenet served here, `base` on the first page"},
            "base": commands,
            "next": {"type": "string", "description": "more homenets: ask again with after=<next>"},
            "homenets": {"type": "object", "additionalProperties": {
                "type": "object", "nullable": True, "required": ["remove", "apply"],
                "description": "null: no longer served at this edge (remove what was applied for it)",
                "properties": {"id": {"type": "integer", "description": "the homenet's id: its handles derive from it"},
                               "remove": commands, "apply": commands,
                               "unshaped": {"type": "string", "description": "why it is left unshaped"}}}},
        }}


def _paths() -> dict[str, Schema]:
    named = f"{API_PREFIX}/homenets/{{name}}"
    return {
        f"{API_PREFIX}/health": {
            "get": _get("getHealth", "Controller and switch health", _json(_ref("Health"), "health"), False)},
        f"{API_PREFIX}/homenets": {
            "get": _get("listHomenets", "All homenets",
                        _json({"type": "array", "items": _ref("HomenetSummary")}, "homenets"), False),
            "post": _change("createHomenet", "Serve a new homenet (stored; survives restarts)", "201",
                            "created and in the data plane of every connected switch", body=True)},
        named: {
            "parameters": [_name_parameter()],
            "get": _get("getHomenet", "A homenet: prefixes, uplinks, paths with measurements, classes",
                        _json(_ref("Homenet"), "the homenet"), True),
            "put": _change("replaceHomenet", "Change a homenet (what it keeps stays untouched)", "200",
                           "changed in the data plane", body=True, named=True),
            "delete": _change("deleteHomenet", "Stop serving a homenet: flows, groups and BGP routes go",
                              "200", "removed from every switch; prefixes withdrawn", named=True)},
        f"{named}/policy": {
            "parameters": [_name_parameter()],
            "get": _get("getPolicy", "A homenet's traffic policy", _json(_ref("Policy"), "the policy"), True),
            "put": {
                "operationId": "putPolicy",
                "summary": "Replace a homenet's traffic policy",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("Policy")}}},
                "responses": _responses({
                    "200": _json(_ref("PolicyResult"), "applied: in the data plane"),
                    "202": _json(_ref("PolicyResult"), "accepted; applied when the pending switches connect"),
                }, ["400", "401", "403", "404", "405", "411", "413", "415", "500"]),
            }},
        f"{named}/uplinks/{{uplink}}": {
            "parameters": [_name_parameter(),
                           {"name": "uplink", "in": "path", "required": True, "description": "the uplink's name",
                            "schema": {"type": "string", "pattern": NAME_PATTERN}}],
            "put": {
                "operationId": "putUplinkAddress",
                "summary": "The address an ISP gave a homenet's uplink (a lease), or null: where the "
                           "edges' tunnels end (the operator, or the box's agent)",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("UplinkAddress")}}},
                "responses": _responses({
                    "200": _json({"type": "object"}, "applied: the edges send that uplink's tunnels there"),
                    "202": _json({"type": "object"}, "accepted and stored; applied when the edges connect"),
                }, ["400", "401", "403", "404", "405", "411", "413", "415", "500"]),
            }},
        f"{API_PREFIX}/edges/{{edge}}/shaping": {
            "parameters": [
                {"name": "edge", "in": "path", "required": True, "description": "the edge's name",
                 "schema": {"type": "string", "pattern": NAME_PATTERN}},
                {"name": "since", "in": "query", "required": False,
                 "description": "the version the caller has applied; absent: everything",
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "after", "in": "query", "required": False,
                 "description": "everything, from the homenet after this name (the `next` of the page before)",
                 "schema": {"type": "string", "pattern": NAME_PATTERN}}],
            "get": _get("getEdgeShaping", "An edge's downstream shaping (tc commands), all of it or the "
                        "homenets changed since a version: what the edge's shaper applies (the operator's)",
                        _json(_ref("EdgeShaping"), "the commands"), True)},
        f"{API_PREFIX}/switches": {
            "parameters": [
                {"name": "after", "in": "query", "required": False,
                 "description": "the switches after this datapath id (the `next` of the page before)",
                 "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}},
                {"name": "limit", "in": "query", "required": False, "description": "switches in this page",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}}],
            "get": _get("listSwitches", "Every configured switch and its state, in pages by datapath id "
                        "(the operator's)", _json({"type": "object", "required": ["switches"], "properties": {
                            "switches": {"type": "object", "additionalProperties": {"type": "object"}},
                            "next": {"type": "string", "description": "more: ask again with after=<next>"}}},
                            "a page of switches"), False)},
        f"{API_PREFIX}/openapi.json": {
            "get": _get("getOpenApi", "This document", _json({"type": "object"}, "OpenAPI 3.0.3"), False,
                        public=True)},
        METRICS_PATH: {
            "get": _get("getMetrics", "Prometheus metrics (the operator's token; see docs/operations.md)",
                        {"description": "the text exposition format, version 0.0.4",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}, False)},
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the API description (callers may mutate it)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "msp controller",
            "version": "1.0.0",
            "description": "Multihoming as a service: homenets, their paths and traffic policies. "
                           "Every error is JSON: {\"error\": {\"status\", \"where\", \"message\"}}.",
        },
        "paths": _paths(),
        # Every operation needs a bearer token when the controller has tokens configured.
        "security": [{"bearer": []}],
        "components": {
            "schemas": {**_policy_schemas(), **_status_schemas(), "UplinkAddress": {
                "type": "object", "additionalProperties": False, "required": ["address"],
                "properties": {"address": {"type": "string", "format": "ipv4", "nullable": True,
                                           "description": "null: the uplink has no address now"}}},
                "EdgeShaping": _edge_shaping_schema()},
            "responses": _error_responses(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from `mspctl token`; the config keeps its SHA-256"}},
        },
    }
