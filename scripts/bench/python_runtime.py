"""A minimal Lambda runtime loop for Python handlers, for the cold-start comparison.

It does what the AWS Python runtime does for one function, and no more (AWS's own adds its
runtime interface client on top, so this favours Python): import the handler's module, then
ask the Runtime API for events and post each result.

    python3 python_runtime.py MODULE_FILE HANDLER_NAME
"""

import importlib.util
import json
import os
import sys
import urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
spec = importlib.util.spec_from_file_location("function", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
handler = getattr(module, sys.argv[2])

while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    try:
        body, path = json.dumps(handler(event, None)), "/response"
    except Exception as e:  # reported to the Runtime API, as Lambda's runtime does
        body, path = json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}), "/error"
    post = urllib.request.Request(
        api + "/invocation/" + request_id + path, data=body.encode(), method="POST"
    )
    urllib.request.urlopen(post).close()
