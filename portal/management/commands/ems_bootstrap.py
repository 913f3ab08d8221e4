"""``manage.py ems_bootstrap``: run every app's idempotent bootstrap step."""

from django.core.management.base import BaseCommand

from portal.bootstrap_runner import run_all


class Command(BaseCommand):
    help = "Create the platform's built-in rows (and, with --demo, demo logins). Safe to rerun."

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo",
            action="store_true",
            help="also create demo logins (only allowed with DEBUG on)",
        )

    def handle(self, *args, demo: bool, **options):
        ran = run_all(demo=demo, log=lambda line: self.stdout.write(line))
        self.stdout.write(self.style.SUCCESS(f"bootstrap done: {', '.join(ran)}"))
