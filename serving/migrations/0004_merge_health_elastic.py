from django.db import migrations


class Migration(migrations.Migration):
    """Joins the two branches of 0003 (instance health and elastic metrics), built side by
    side; neither touches the other's tables."""

    dependencies = [
        ("serving", "0003_elastic_metrics"),
        ("serving", "0003_instance_health"),
    ]

    operations = []
