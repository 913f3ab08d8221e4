"""The reconciler: makes each service's instances on the backends match what the database wants.

One pass per service (``reconcile(service_pk)``), holding the service's lease (a conditional
UPDATE, so concurrent passes — two workers, beat and an on-commit task — never overlap; the
loser simply returns ``busy``). The lease is short (``EMS_SERVING_LEASE_SECONDS``) and renewed
by a heartbeat thread while the pass runs, so a killed worker's lease runs out in seconds. A
pass is idempotent: it reads the backend's state (containers labelled with service and instance
ids), then

1. removes orphans (labelled with the service but unknown to the database, e.g. left by a worker
   killed between creating a container and recording it);
2. stops instances marked ``stopping`` (scale-in, stop, delete, rolled-out revisions) and
   releases their capacity with the exact stop time the backend reports;
3. launches ``pending`` instances (model into the node's cache, then ``backend.start``),
   watches ``starting`` ones until the runtime reports ``AVAILABLE``, and notices crashed ones
   (exited, paused, or taken out of the routes by the health probe, ``serving.health``):
   they are recorded (``stopped_at``, last message, the runtime's last log lines), counted, and
   replaced after a backoff — after ``EMS_SERVING_MAX_FAILURES`` crashes without a healthy
   instance in between the service is ``Failed`` with the log lines in its message;
4. rolls a new revision out (one extra instance at a time, the old one removed only once a new
   one is healthy; with no spare capacity, one old instance is stopped first, and the service's
   message says so) and scales to the desired count;
5. derives the service's status; after the pass ``serving.publish.after_pass`` publishes the
   route when anything it depends on changed (and repairs it after a quiet pass).

``sweep_node(node)`` removes every labelled container of a node unknown to the database and
garbage-collects the node's model cache; beat runs ``reconcile_all`` periodically
(``serving.reconciler.fleet``: every node listed once, services that need nothing found
without a query each, then every route published at once).
"""

from serving.reconciler.core import BUSY, IDLE, PROGRESSING, reconcile
from serving.reconciler.fleet import reconcile_all, sweep_node

__all__ = ["BUSY", "IDLE", "PROGRESSING", "reconcile", "reconcile_all", "sweep_node"]
