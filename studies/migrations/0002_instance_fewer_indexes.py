# Fewer indexes on studies_instance: each costs every received instance an insert. The new unique
# constraints come first, so that the columns are never without one.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("studies", "0001_initial"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="instance",
            constraint=models.UniqueConstraint(fields=("sop_uid",), name="instance_sop_uid_unique"),
        ),
        migrations.AddConstraint(
            model_name="instance",
            constraint=models.UniqueConstraint(fields=("path",), name="instance_path_unique"),
        ),
        migrations.AlterField(
            model_name="instance",
            name="path",
            field=models.CharField(max_length=128),
        ),
        migrations.AlterField(
            model_name="instance",
            name="series",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="instances",
                to="studies.series",
            ),
        ),
        migrations.AlterField(
            model_name="instance",
            name="sop_uid",
            field=models.CharField(max_length=64, verbose_name="SOP Instance UID"),
        ),
    ]
