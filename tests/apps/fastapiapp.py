"""A FastAPI app: path and query parameters, a pydantic body, validation errors, lifespan,
a dependency, a WebSocket."""
import contextlib

from fastapi import Depends, FastAPI, WebSocket
from pydantic import BaseModel

STARTED = []


@contextlib.asynccontextmanager
async def lifespan(app):
    STARTED.append("up")
    yield


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float


def common(limit: int = 10):
    return {"limit": limit}


@app.get("/")
async def root():
    return {"hello": "fastapi", "started": STARTED}


@app.get("/items/{item_id}")
async def read_item(item_id: int, params: dict = Depends(common)):
    return {"item_id": item_id, **params}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}


@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    data = await websocket.receive_bytes()
    await websocket.send_bytes(data[::-1])
    await websocket.close(code=4000, reason="done")
