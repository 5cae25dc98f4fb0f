"""An app that starts a thread when it is imported (what preload_app warns about: under
--preload that thread runs in the master only). Serves plumbingapp's routes."""

import threading
import time

import plumbingapp


def _background():
    while True:
        time.sleep(0.5)


threading.Thread(target=_background, name="started-at-import", daemon=True).start()

app = plumbingapp.app
application = app
