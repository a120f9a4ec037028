"""worklist.services: orders_mark_arrived (called per stored instance) and order_cancel."""

import pytest

from tests.worklist import hl7_samples as s
from worklist.models import Order
from worklist.services import OrderNotOpen, hl7_file_intake, order_cancel, orders_mark_arrived

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders():
    messages = [
        s.radis_orm(),
        s.radis_orm("RADIS000102", placer="PLC1002", filler="FIL1002", accession="ACC1002"),
        s.radis_orm("RADIS000103", placer="PLC1003", filler="FIL1003", accession="ACC1003"),
    ]
    data = b"".join(s.text(m).encode("latin-1") for m in messages)
    hl7_file_intake(data=data, source="import", source_detail="")
    return {o.accession_number: o for o in Order.objects.all()}


def state(accession: str) -> str:
    return Order.objects.get(accession_number=accession).state


def test_arrival_by_study_uid_marks_the_order_done(orders):
    assert orders_mark_arrived(study_uid="1.2.840.113619.2.55.3.1001", accession_number="") == 1
    order = Order.objects.get(accession_number="ACC1001")
    assert (order.state, order.state_reason) == (Order.State.DONE, "images arrived")
    assert order.arrived_at is not None
    assert (state("ACC1002"), state("ACC1003")) == ("scheduled", "scheduled")


def test_arrival_by_accession_number_with_another_study_uid(orders):
    assert orders_mark_arrived(study_uid="1.2.3.999", accession_number="ACC1002") == 1
    assert state("ACC1002") == Order.State.DONE


def test_more_instances_of_the_study_change_nothing_more(orders):
    orders_mark_arrived(study_uid="1.2.840.113619.2.55.3.1001", accession_number="ACC1001")
    arrived_at = Order.objects.get(accession_number="ACC1001").arrived_at
    assert (
        orders_mark_arrived(study_uid="1.2.840.113619.2.55.3.1001", accession_number="ACC1001") == 0
    )
    assert Order.objects.get(accession_number="ACC1001").arrived_at == arrived_at


def test_cancelled_orders_stay_cancelled_when_images_arrive(orders):
    order_cancel(order_id=orders["ACC1003"].pk, reason="by hand")
    assert (
        orders_mark_arrived(study_uid="1.2.840.113619.2.55.3.1003", accession_number="ACC1003") == 0
    )
    assert state("ACC1003") == Order.State.CANCELLED


def test_unrelated_study_and_empty_accession_match_nothing(orders):
    assert orders_mark_arrived(study_uid="1.2.3.4", accession_number="  ") == 0
    assert orders_mark_arrived(study_uid="", accession_number="") == 0
    assert set(Order.objects.values_list("state", flat=True)) == {"scheduled"}


def test_order_cancel_cancels_an_open_order_and_refuses_a_done_one(orders):
    cancelled = order_cancel(order_id=orders["ACC1001"].pk, reason="patient declined")
    assert (cancelled.state, cancelled.state_reason) == (Order.State.CANCELLED, "patient declined")
    orders_mark_arrived(study_uid="1.2.840.113619.2.55.3.1002", accession_number="")
    with pytest.raises(OrderNotOpen, match="order ACC1002 is done"):
        order_cancel(order_id=orders["ACC1002"].pk, reason="too late")
    with pytest.raises(OrderNotOpen, match="order ACC1001 is cancelled"):
        order_cancel(order_id=orders["ACC1001"].pk, reason="again")
