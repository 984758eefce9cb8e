"""The OpenAPI 3 schema `lyra2 serve` publishes at /openapi.json, built from lyra2/fields.py so the field names,
defaults, ranges and enums are the endpoint's (fal-ai/lyra-2/zoom) by construction."""
import base64
import struct
import zlib

from ..fields import APPLICATION, SCHEMA, SEED_MAX

_ENUM_NAMES = {"zoom_direction": "ZoomDirectionEnum", "num_frames": "NumFramesEnum",
               "zoom_in_trajectory": "ZoomInTrajectoryEnum", "zoom_out_trajectory": "ZoomOutTrajectoryEnum",
               "resolution": "ResolutionEnum"}
_DESCRIPTIONS = {
    "image_url": "URL of the input image (http(s) URL or data: URI).",
    "prompt": "Text prompt describing the scene.",
    "zoom_direction": "Zoom-in video, zoom-out video, or a combined out-then-in video.",
    "num_frames": "Number of frames per direction (1 + 80k).",
    "zoom_in_trajectory": "Camera-trajectory preset for the zoom-in direction.",
    "zoom_in_strength": "Displacement scale for the zoom-in trajectory (relative to subject depth).",
    "zoom_out_trajectory": "Camera-trajectory preset for the zoom-out direction.",
    "zoom_out_strength": "Displacement scale for the zoom-out trajectory.",
    "resolution": "Output resolution. 480p = 480x832, 720p = 720x1280.",
    "use_dmd": "Enable the DMD distillation LoRA and 4-step scheduler.",
    "guidance_scale": "Classifier-free guidance scale.",
    "num_inference_steps": "Number of denoising steps per frame chunk (ignored with use_dmd).",
    "frames_per_second": "Frame rate of the output video.",
    "seed": "Random seed for reproducibility. If not provided, a random seed is chosen.",
}


def _property(name):
    kind, default, constraint = SCHEMA[name]
    out = {"title": name.replace("_", " ").title(), "description": _DESCRIPTIONS[name]}
    if kind == "str":
        out.update(type="string", minLength=1)
    elif kind == "enum":
        out.update(type="string", enum=list(constraint), default=default)
    elif kind == "int_enum":
        out.update(type="integer", enum=list(constraint), default=default)
    elif kind == "float":
        out.update(type="number", minimum=constraint[0], maximum=constraint[1], default=default)
    elif kind == "int":
        out.update(type="integer", minimum=constraint[0], maximum=constraint[1], default=default)
    elif kind == "bool":
        out.update(type="boolean", default=default)
    elif kind == "seed":
        out.update(type="integer", minimum=0, maximum=SEED_MAX)
    return out


def example_image_uri(height=16, width=24):
    """A small PNG (a colour ramp) as a data: URI: the schema's example input, so API fuzzers and the docs have
    an image_url that works without network access."""
    rows = b"".join(b"\0" + bytes(c for x in range(width) for c in (x * 255 // width, y * 255 // height, 96))
                    for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _error(description):
    return {"description": description, "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}


def build(app=APPLICATION):
    queue_prefix = "/queue/" + app
    owner_alias = "/".join(app.split("/")[:2])
    requests = f"/queue/{owner_alias}/requests/{{request_id}}"
    auth_errors = {"401": _error("Missing or wrong API key"), "404": _error("No such request")}
    request_id = {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
    example = {"image_url": example_image_uri(), "prompt": "A slow orbit around a quiet street, everything still.",
               "num_frames": 81, "resolution": "480p", "seed": 1}
    body = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Input"}, "example": example}}}
    links = {name: {"operationId": name, "parameters": {"request_id": "$response.body#/request_id"}}
             for name in ("status", "result", "cancel")}
    submit_errors = {"400": _error("Malformed request body"), "401": _error("Missing or wrong API key"),
                     "413": _error("Request body too large"), "422": _error("Invalid field or image")}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{app} (lyra2 serve)", "version": "1.0.0",
                 "description": "fal's queue protocol for the Lyra 2 zoom endpoint, served by lyra2."},
        "components": {
            "securitySchemes": {"apiKeyAuth": {"type": "apiKey", "in": "header", "name": "Authorization",
                                               "description": "Fal Key: `Key <api key>`"}},
            "schemas": {
                "Input": {"type": "object", "title": "LyraZoomInput", "required": ["image_url", "prompt"],
                          "additionalProperties": False,
                          "properties": {n: _property(n) for n in SCHEMA}},
                "VideoFile": {"type": "object", "required": ["url", "content_type"], "properties": {
                    "url": {"type": "string"}, "content_type": {"type": "string"},
                    "file_name": {"type": "string"}, "file_size": {"type": "integer"}}},
                "Output": {"type": "object", "required": ["video", "seed"], "properties": {
                    "video": {"$ref": "#/components/schemas/VideoFile"},
                    "seed": {"type": "integer"},
                    "timings": {"type": "object", "additionalProperties": {"type": "number"}},
                    "mode": {"type": "string", "enum": ["generate", "preview"]},
                    "preview": {"type": "string"}}},
                "QueueStatus": {"type": "object", "required": ["status", "request_id"], "properties": {
                    "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
                    "request_id": {"type": "string"},
                    "response_url": {"type": "string"}, "status_url": {"type": "string"},
                    "cancel_url": {"type": "string"},
                    "queue_position": {"type": "integer", "minimum": 0},
                    "logs": {"type": "array", "nullable": True, "items": {"type": "object"}},
                    "metrics": {"type": "object"},
                    "error": {"type": "string", "nullable": True},
                    "error_type": {"type": "string", "nullable": True}}},
                "Error": {"type": "object", "required": ["detail"], "properties": {
                    "detail": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
                    "error_type": {"type": "string", "nullable": True},
                    "status": {"type": "string"}}},
            },
        },
        "security": [{"apiKeyAuth": []}],
        "paths": {
            "/" + app: {"post": {
                "summary": "Run synchronously (fal.run): returns the result when the job is done",
                "operationId": "run", "requestBody": body,
                "responses": {"200": {"description": "The result", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Output"}}}}, **submit_errors,
                    "500": _error("The job failed while running")}}},
            queue_prefix: {"post": {
                "summary": "Submit to the queue (queue.fal.run)", "operationId": "submit", "requestBody": body,
                "responses": {"200": {"description": "Queued", "links": links, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/QueueStatus"}}}}, **submit_errors}}},
            requests + "/status": {"get": {
                "summary": "Status of a request", "operationId": "status",
                "parameters": [request_id, {"name": "logs", "in": "query", "required": False,
                                            "schema": {"type": "boolean"}}],
                "responses": {"200": {"description": "Status", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/QueueStatus"}}}}, **auth_errors}}},
            requests: {"get": {
                "summary": "Result of a request", "operationId": "result", "parameters": [request_id],
                "responses": {"200": {"description": "The result", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Output"}}}},
                    "400": _error("Still running, or cancelled"), **auth_errors,
                    "410": _error("Result removed by retention"), "422": _error("Invalid input"),
                    "500": _error("The job failed while running"),
                    "504": _error("start_timeout passed before the job started")}}},
            requests + "/cancel": {"put": {
                "summary": "Cancel a request", "operationId": "cancel", "parameters": [request_id],
                "responses": {"202": {"description": "Cancelled or cancellation requested",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "required": ["status"],
                                          "properties": {"status": {"type": "string"}}}}}},
                              "400": _error("Already completed"), **auth_errors}}},
            "/health": {"get": {"summary": "200 once the server accepts jobs", "operationId": "health",
                                "security": [], "responses": {"200": {"description": "Accepting jobs"}}}},
        },
    }
