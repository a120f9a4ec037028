"""The worklist in the admin: orders with state and source message, cancelling, the message log."""

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from tests.worklist import hl7_samples as s
from worklist.models import HL7Message, Order
from worklist.services import hl7_file_intake, orders_mark_arrived

pytestmark = pytest.mark.django_db

ORDERS_URL = "/admin/worklist/order/"
MESSAGES_URL = "/admin/worklist/hl7message/"


def load(*messages) -> None:
    data = b"".join(s.text(m).encode("latin-1") for m in messages)
    hl7_file_intake(data=data, source="upload", source_detail="admin tests")


@pytest.fixture
def orders():
    load(
        s.radis_orm(),
        s.radis_orm("RADIS000102", placer="PLC1002", filler="FIL1002", accession="ACC1002"),
        s.radis_orm("RADIS000103", placer="PLC1003", filler="FIL1003", accession="ACC1003"),
        s.changed(s.radis_orm("RADIS000199"), "PID", 3, ""),
    )
    return {o.accession_number: o for o in Order.objects.all()}


def test_orders_list_shows_state_and_links_to_the_message(admin_client, orders):
    orders_mark_arrived(study_uid=orders["ACC1002"].study_uid)
    response = admin_client.get(ORDERS_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Müller, Hans" in page
    assert "ACC1001" in page and "ACC1003" in page
    assert "done" in page and "scheduled" in page
    message = orders["ACC1001"].message
    assert f'href="/admin/worklist/hl7message/{message.pk}/change/"' in page


def test_list_query_count_does_not_grow_with_the_orders(admin_client, orders):
    admin_client.get(ORDERS_URL)
    with CaptureQueriesContext(connection) as three:
        admin_client.get(ORDERS_URL)
    load(
        *(
            s.radis_orm(f"R{n}", placer=f"P{n}", filler=f"F{n}", accession=f"ACC{n}")
            for n in range(5000, 5010)
        )
    )
    with CaptureQueriesContext(connection) as thirteen:
        admin_client.get(ORDERS_URL)
    assert len(thirteen) == len(three)


def test_cancel_action_cancels_open_orders_and_refuses_done_ones(admin_client, orders):
    orders_mark_arrived(study_uid=orders["ACC1002"].study_uid)
    response = admin_client.post(
        ORDERS_URL,
        {
            "action": "cancel_orders",
            "_selected_action": [orders["ACC1001"].pk, orders["ACC1002"].pk],
        },
        follow=True,
    )
    notes = [str(m) for m in get_messages(response.wsgi_request)]
    assert "Cancelled 1 order(s): ACC1001." in notes
    assert "Not cancelled: order ACC1002 is done." in notes
    cancelled = Order.objects.get(accession_number="ACC1001")
    assert cancelled.state == Order.State.CANCELLED
    assert cancelled.state_reason == "cancelled by admin in the admin"
    assert Order.objects.get(accession_number="ACC1002").state == Order.State.DONE


def test_order_detail_is_read_only_and_orders_cannot_be_added_or_deleted(admin_client, orders):
    order = orders["ACC1001"]
    url = f"{ORDERS_URL}{order.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "1.2.840.113619.2.55.3.1001" in page
    assert 'name="accession_number"' not in page
    admin_client.post(url, {"accession_number": "CHANGED"})
    assert Order.objects.get(pk=order.pk).accession_number == "ACC1001"
    assert admin_client.get(f"{ORDERS_URL}add/").status_code == 403
    assert admin_client.post(f"{ORDERS_URL}{order.pk}/delete/").status_code == 403


def test_message_log_lists_stored_and_rejected_messages(admin_client, orders):
    page = admin_client.get(MESSAGES_URL).content.decode()
    assert "RADIS000101" in page
    assert "RADIS000199" in page and "PID-3 patient ID is missing" in page
    message = HL7Message.objects.get(control_id="RADIS000101")
    detail = admin_client.get(f"{MESSAGES_URL}{message.pk}/change/").content.decode()
    assert "PID|1||PAT1001^^^HOSP^MR~998877^^^NATION^SS||Müller^Hans^Peter^^Dr." in detail
    assert f'href="{ORDERS_URL}{orders["ACC1001"].pk}/change/"' in detail
    assert admin_client.post(f"{MESSAGES_URL}{message.pk}/change/", {}).status_code == 403
    assert admin_client.post(f"{MESSAGES_URL}{message.pk}/delete/").status_code == 403
    assert admin_client.get(f"{MESSAGES_URL}add/").status_code == 403


def test_values_from_the_message_are_escaped(admin_client):
    load(s.changed(s.radis_orm(), "PID", 5, "<script>alert(1)</script>^Eve"))
    order = Order.objects.get()
    for url in (
        ORDERS_URL,
        f"{ORDERS_URL}{order.pk}/change/",
        f"{MESSAGES_URL}{order.message.pk}/change/",
    ):
        page = admin_client.get(url).content.decode()
        assert "<script>alert(1)" not in page, url
        assert "&lt;script&gt;alert(1)" in page, url


def test_web_users_reach_none_of_it(client, orders):
    client.force_login(User.objects.create_user("doctor", can_upload=True))
    for url in (ORDERS_URL, MESSAGES_URL, f"{ORDERS_URL}{orders['ACC1001'].pk}/change/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url
