"""The Flask app tests/systemd/ and tests/packaging/ serve under a real systemd (in a
systemd-nspawn container).

Flask comes from the virtualenv named by the unit's config (`virtualenv =`), so a served
request also proves the venv was activated for the service user. Routes:

    /pid          the worker's pid (what harness.Load counts)
    /whoami       JSON: pid, ppid, uid, user name, flask.__file__
    /sleep?s=     sleeps s seconds, answers the worker's pid
    /boom         raises RuntimeError (PROPAGATE_EXCEPTIONS: the server logs the traceback
                  and answers 500, not Flask)
    anything else 200 "ok <path>"

DEMO_IMPORT_DELAY (seconds, from the config's raw_env) makes the import slow, so that a
READY=1 sent before the workers have imported the app shows in systemd's timestamps.
"""

import os
import pwd
import time

import flask
from flask import Flask, jsonify, request

time.sleep(float(os.environ.get("DEMO_IMPORT_DELAY", "0")))

app = Flask(__name__)
# Let exceptions reach the WSGI server: its error log (the journal) must get the traceback.
app.config["PROPAGATE_EXCEPTIONS"] = True


@app.get("/pid")
def pid():
    return str(os.getpid())


@app.get("/whoami")
def whoami():
    uid = os.getuid()
    return jsonify(pid=os.getpid(), ppid=os.getppid(), uid=uid,
                   user=pwd.getpwuid(uid).pw_name, flask_file=flask.__file__)


@app.get("/sleep")
def sleep():
    time.sleep(float(request.args.get("s", "1")))
    return str(os.getpid())


@app.get("/boom")
def boom():
    raise RuntimeError("demo-boom: raised on purpose by systemdapp")


@app.get("/<path:anything>")
def anything(anything):
    return "ok /%s\n" % anything
