"""A Starlette app: routes, a JSON body, a streaming response, lifespan state, a WebSocket."""
import contextlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}


async def home(request):
    return PlainTextResponse("Hello from Starlette")


async def item(request):
    return JSONResponse({"id": int(request.path_params["id"]), "q": request.query_params.get("q"),
                         "root_path": request.scope["root_path"], "url": str(request.url)})


async def post_json(request):
    data = await request.json()
    return JSONResponse({"got": data, "greeting": request.state.greeting})


async def upload(request):
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
    return JSONResponse({"received": total})


async def stream(request):
    async def numbers():
        for i in range(5):
            yield "line %d\n" % i
    return StreamingResponse(numbers(), media_type="text/plain")


async def ws_echo(websocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text("echo: " + text)


app = Starlette(lifespan=lifespan, routes=[
    Route("/", home),
    Route("/items/{id:int}", item),
    Route("/json", post_json, methods=["POST"]),
    Route("/upload", upload, methods=["POST"]),
    Route("/stream", stream),
    WebSocketRoute("/ws", ws_echo),
])
