from benchmark.engine.evaluation import prediction_record
from tasks.base import make_example
from tests.support.toy_task import ToyTask


def test_prediction_record_carries_the_cluster(tmp_path) -> None:
    task = ToyTask(tmp_path, [], [])
    story = make_example("tale#3", "Once.", "Who?", "the fox", ["the fox", "a fox"], cluster="tale")
    alone = make_example("q7", "Text.", "What?", "Zürich")
    assert prediction_record(task, story, "fox") == {
        "id": "tale#3", "cluster": "tale", "prediction": "fox", "references": ["the fox", "a fox"],
        "f1": 100.0, "exact_match": 100.0,
    }
    assert prediction_record(task, alone, "Bern")["cluster"] == "q7"  # no shared source: its own cluster
