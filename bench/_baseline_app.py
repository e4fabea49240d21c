"""The benchmark's baseline: a Flask app of its own (not the product) that answers ``GET /fixed``
with the bytes of the file named by ``BASELINE_BODY``, as FHIR JSON.  Served by gunicorn exactly as
``fhirstudy serve`` serves the product, it measures what the stack costs without any search."""
import os

from flask import Flask, Response

app = Flask(__name__)
with open(os.environ["BASELINE_BODY"], "rb") as _fh:
    BODY = _fh.read()


@app.get("/fixed")
def fixed() -> Response:
    return Response(BODY, content_type="application/fhir+json")
