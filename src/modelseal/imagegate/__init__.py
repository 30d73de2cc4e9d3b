"""The ``image`` gate: least privilege and unsafe payloads across the whole built image.

The gate reads each platform image of the build gate's OCI layout once: its config (runtime
user, exposed ports, environment, labels, healthcheck, history) and its resolved filesystem (the
shared post-build pass of :mod:`modelseal.postbuild`). Each check is a *collector* in its own
module (:data:`modelseal.imagegate.gate.COLLECTORS`) returning findings; the gate only collects
evidence, and :mod:`modelseal.imagegate.rules` judges it under the policy's ``image`` section.
"""
