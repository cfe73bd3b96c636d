"""End to end: the official openai SDK (Responses) and anthropic SDK (Messages) -> a real
`taskgate serve` -> each provider kind's strict fake.

Only the base URL changes. Every call appears in its task's cost; a Responses
conversation (previous_response_id) continues across providers, through a fallback.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Fakes, base_config, model_entry

KINDS = ["openai", "azure", "bedrock", "ollama", "vllm", "llamacpp", "anthropic"]
INSTRUCTIONS = "You are terse."
QUESTION = "What is the answer?"
PROMPT_WORDS = 3 + 4
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                                    "unit": {"type": "string"}},
                                   "required": ["city"]}}]
MESSAGES_TOOLS = [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": RESPONSES_TOOLS[0]["parameters"]}]


def reply_text(name: str) -> str:
    return f"Hello from {name} the answer is 42."


@pytest.fixture(scope="module")
def gateway(fakes: Fakes, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import GatewayProcess

    models = [model_entry(f"chat-{kind}", fakes.params(kind), id=f"{kind}-chat") for kind in KINDS]
    # a group whose first deployment fails over to the second (bedrock), for the cross-provider conversation
    models.append(model_entry("chain", fakes.params("openai"), id="chain-openai"))
    models.append(model_entry("chain", fakes.params("bedrock"), id="chain-bedrock"))
    config = base_config(redis_server.url, models,
                         routing={"retries": {"max": 0}})
    gw = GatewayProcess(config, tmp_path_factory.mktemp("agents"))
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: Any, fakes: Fakes) -> openai.OpenAI:
    fakes.reset()
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="no-auth", max_retries=0, timeout=20)


@pytest.fixture
def aclient(gateway: Any, fakes: Fakes) -> openai.AsyncOpenAI:
    fakes.reset()
    return openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="no-auth", max_retries=0, timeout=20)


@pytest.fixture
def claude(gateway: Any, fakes: Fakes) -> anthropic.Anthropic:
    fakes.reset()
    return anthropic.Anthropic(base_url=gateway.url, api_key="no-auth", max_retries=0, timeout=20)


def task(gw: Any, task_id: str) -> dict[str, Any]:
    return httpx.get(f"{gw.url}/v1/tasks/{task_id}", timeout=10).json()


# --- Responses ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_responses_create(client: openai.OpenAI, gateway: Any, fakes: Fakes, kind: str) -> None:
    raw = client.responses.with_raw_response.create(model=f"chat-{kind}", instructions=INSTRUCTIONS,
                                                    input=QUESTION, extra_headers={"X-Task-Id": f"t-resp-{kind}"})
    reply = raw.parse()
    assert reply.output_text == reply_text(kind)
    assert reply.status == "completed" and reply.id.startswith("resp_")
    assert reply.usage.input_tokens == PROMPT_WORDS == fakes.all[kind].billed.input_tokens
    assert reply.usage.output_tokens == 7
    assert raw.headers["x-task-id"] == f"t-resp-{kind}"
    assert Decimal(raw.headers["x-request-cost-usd"]) >= 0
    t = task(gateway, f"t-resp-{kind}")
    assert t["attempts"] == 1 and t["output_tokens"] == 7
    # stored by default: GET returns it
    assert client.responses.retrieve(reply.id).output_text == reply_text(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_responses_stream(client: openai.OpenAI, fakes: Fakes, kind: str) -> None:
    events = list(client.responses.create(model=f"chat-{kind}", instructions=INSTRUCTIONS, input=QUESTION,
                                          stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for required in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert required in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == reply_text(kind)
    done = events[-1].response
    assert done.output_text == reply_text(kind)
    assert done.usage.input_tokens == PROMPT_WORDS and done.usage.output_tokens == 7


@pytest.mark.parametrize("kind", KINDS)
def test_responses_function_tools(client: openai.OpenAI, kind: str) -> None:
    reply = client.responses.create(model=f"chat-{kind}", input=QUESTION, tools=RESPONSES_TOOLS)
    (call,) = [item for item in reply.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    follow = client.responses.create(model=f"chat-{kind}", tools=RESPONSES_TOOLS, previous_response_id=reply.id,
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny, 21 degrees"}])
    assert follow.output_text == reply_text(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_responses_stream_tools(client: openai.OpenAI, kind: str) -> None:
    events = list(client.responses.create(model=f"chat-{kind}", input=QUESTION, tools=RESPONSES_TOOLS,
                                          stream=True))
    types = [e.type for e in events]
    assert "response.function_call_arguments.done" in types and types[-1] == "response.completed"
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Paris", "unit": "celsius"}
    (call,) = [i for i in events[-1].response.output if i.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == json.loads(args)


@pytest.mark.parametrize("kind", KINDS)
async def test_responses_async(aclient: openai.AsyncOpenAI, kind: str) -> None:
    reply = await aclient.responses.create(model=f"chat-{kind}", input=QUESTION)
    assert reply.output_text == reply_text(kind)
    stream = await aclient.responses.create(model=f"chat-{kind}", input=QUESTION, stream=True)
    text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
    assert text == reply_text(kind)


def test_conversation_continues_across_providers_through_a_fallback(client: openai.OpenAI, gateway: Any,
                                                                    fakes: Fakes) -> None:
    first = client.responses.with_raw_response.create(model="chain", instructions=INSTRUCTIONS, input=QUESTION)
    assert first.headers["x-taskgate-deployment"] == "chain-openai"
    task_id = first.headers["x-task-id"]
    fakes.openai.fail("503", times=5)
    second = client.responses.with_raw_response.create(model="chain", input="And the question?",
                                                      previous_response_id=first.parse().id)
    assert second.headers["x-taskgate-deployment"] == "chain-bedrock"
    assert second.parse().output_text == reply_text("bedrock")
    # the whole conversation reached bedrock: the first question, openai's answer, the new question
    sent = json.dumps(fakes.bedrock.requests[-1]["json"])
    assert QUESTION in sent and reply_text("openai") in sent and "And the question?" in sent
    # one task, no extra header: the chain carries it
    assert second.headers["x-task-id"] == task_id
    t = task(gateway, task_id)
    assert t["attempts"] == 3 and t["cost_picousd"] > 0


def test_stored_responses_are_deleted_and_unknown_ids_are_404(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="chat-openai", input=QUESTION)
    client.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="chat-openai", input="more", previous_response_id=reply.id)
    unstored = client.responses.create(model="chat-openai", input=QUESTION, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_responses_refuses_what_it_cannot_translate(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="chat-openai", input=QUESTION, tools=[{"type": "web_search"}])
    assert "web_search" in err.value.message


# --- Messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_messages_create(claude: anthropic.Anthropic, gateway: Any, fakes: Fakes, kind: str) -> None:
    raw = claude.messages.with_raw_response.create(
        model=f"chat-{kind}", max_tokens=100, system=INSTRUCTIONS,
        messages=[{"role": "user", "content": QUESTION}], extra_headers={"x-claude-code-session-id": f"cc-{kind}"})
    reply = raw.parse()
    assert [b.type for b in reply.content] == ["text"] and reply.content[0].text == reply_text(kind)
    assert reply.stop_reason == "end_turn" and reply.role == "assistant"
    assert reply.usage.input_tokens == PROMPT_WORDS and reply.usage.output_tokens == 7
    assert raw.headers["x-task-id"] == f"cc-{kind}"
    assert task(gateway, f"cc-{kind}")["attempts"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_messages_stream(claude: anthropic.Anthropic, kind: str) -> None:
    with claude.messages.stream(model=f"chat-{kind}", max_tokens=100, system=INSTRUCTIONS,
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_message()
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert "content_block_start" in types and "content_block_stop" in types and "message_delta" in types
    assert final.content[0].text == reply_text(kind)
    assert final.usage.output_tokens == 7 and final.usage.input_tokens == PROMPT_WORDS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("streamed", [False, True])
def test_messages_tools(claude: anthropic.Anthropic, kind: str, streamed: bool) -> None:
    question = [{"role": "user", "content": QUESTION}]
    if streamed:
        with claude.messages.stream(model=f"chat-{kind}", max_tokens=100, tools=MESSAGES_TOOLS,
                                    messages=question) as stream:
            reply = stream.get_final_message()
    else:
        reply = claude.messages.create(model=f"chat-{kind}", max_tokens=100, tools=MESSAGES_TOOLS, messages=question)
    assert reply.stop_reason == "tool_use"
    (use,) = [b for b in reply.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris", "unit": "celsius"}
    follow = claude.messages.create(model=f"chat-{kind}", max_tokens=100, tools=MESSAGES_TOOLS, messages=[
        *question, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])
    assert follow.content[0].text == reply_text(kind)


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model="chat-openai", system=INSTRUCTIONS,
                                           messages=[{"role": "user", "content": QUESTION}])
    assert 7 <= counted.input_tokens <= 30


def test_messages_errors_have_anthropics_shape(claude: anthropic.Anthropic, gateway: Any) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
    r = httpx.post(f"{gateway.url}/v1/messages", json={"model": "chat-openai",
                                                        "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]


def test_model_by_id(client: openai.OpenAI) -> None:
    assert client.models.retrieve("chat-openai").id == "chat-openai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_metrics_have_a_bounded_api_label(client: openai.OpenAI, claude: anthropic.Anthropic, gateway: Any) -> None:
    def count(api: str) -> float:
        text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(f'taskgate_api_requests_total{{api="{api}",status="200"}}'))

    before = {api: count(api) for api in ("chat", "responses", "messages")}
    client.chat.completions.create(model="chat-openai", messages=[{"role": "user", "content": QUESTION}])
    client.responses.create(model="chat-openai", input=QUESTION)
    claude.messages.create(model="chat-openai", max_tokens=10, messages=[{"role": "user", "content": QUESTION}])
    assert {api: count(api) - before[api] for api in before} == {"chat": 1, "responses": 1, "messages": 1}
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert 'taskgate_api_cost_usd_total{api="responses"}' in text
    # unchanged series (plus the bounded actor label of issue 14)
    assert any(line.startswith("taskgate_requests_total{") and all(
        label in line for label in ('model="chat-openai"', 'provider="openai"', 'status="200"', 'actor="human"'))
        for line in text.splitlines())


LONG_SYSTEM = "You are a careful assistant who answers in one short sentence every time."  # 13 words


@pytest.mark.parametrize("kind", KINDS)
def test_cache_control_is_accepted_everywhere(claude: anthropic.Anthropic, kind: str) -> None:
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    reply = claude.messages.create(model=f"chat-{kind}", max_tokens=50, system=system,
                                   messages=[{"role": "user", "content": QUESTION}])
    assert reply.content[0].text == reply_text(kind)


@pytest.mark.parametrize("kind", ["bedrock", "anthropic"])
def test_cache_control_is_cached_upstream_and_priced(claude: anthropic.Anthropic, gateway: Any, fakes: Fakes,
                                                     kind: str) -> None:
    """Bedrock: cache_control becomes a cachePoint. Anthropic: it goes as it is. Writes and reads are priced."""
    from gateway.accounting.pricing import load_price_map
    from tests.conftest import ANTHROPIC_CHAT, BEDROCK_CHAT

    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "5m"}}]
    usages = []
    for _ in range(2):
        reply = claude.messages.create(model=f"chat-{kind}", max_tokens=50, system=system,
                                       messages=[{"role": "user", "content": QUESTION}],
                                       extra_headers={"X-Task-Id": f"t-cache-{kind}"})
        usages.append(reply.usage)
    sent = fakes.all[kind].requests[-1]["json"]
    if kind == "bedrock":
        assert sent["system"] == [{"text": LONG_SYSTEM}, {"cachePoint": {"type": "default"}}]
    else:
        assert sent["system"] == system
    write, read = usages
    assert (write.cache_creation_input_tokens, write.cache_read_input_tokens, write.input_tokens) == (13, 0, 4)
    assert (read.cache_creation_input_tokens, read.cache_read_input_tokens, read.input_tokens) == (0, 13, 4)
    price = load_price_map()[BEDROCK_CHAT if kind == "bedrock" else ANTHROPIC_CHAT]
    per = {k: Decimal(str(price[k])) for k in ("input_cost_per_token", "output_cost_per_token",
                                               "cache_creation_input_token_cost", "cache_read_input_token_cost")}
    expected = (2 * 4 * per["input_cost_per_token"] + 2 * 7 * per["output_cost_per_token"]
                + 13 * per["cache_creation_input_token_cost"] + 13 * per["cache_read_input_token_cost"])
    t = task(gateway, f"t-cache-{kind}")
    assert t["cost_picousd"] == int(expected * 10**12)
    assert per["cache_read_input_token_cost"] < per["input_cost_per_token"] < per["cache_creation_input_token_cost"]


@pytest.mark.parametrize("kind", ["openai", "bedrock", "anthropic"])
def test_openai_agents_sdk_runs_a_tool_using_agent_as_one_task(gateway: Any, fakes: Fakes, kind: str) -> None:
    import agents

    fakes.reset()
    calls: list[dict[str, Any]] = []

    @agents.function_tool
    def get_weather(city: str, unit: str = "celsius") -> str:
        """Weather for a city."""
        calls.append({"city": city, "unit": unit})
        return "sunny, 21 degrees"

    agents.set_tracing_disabled(True)
    task_ids: list[str] = []

    async def seen(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/responses"):
            task_ids.append(response.headers["x-task-id"])

    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="no-auth", max_retries=0, timeout=20,
                                http_client=httpx.AsyncClient(event_hooks={"response": [seen]}))
    model = agents.OpenAIResponsesModel(model=f"chat-{kind}", openai_client=client)  # the SDK's default API
    agent = agents.Agent(name="weather", instructions=INSTRUCTIONS, tools=[get_weather], model=model)
    result = agents.Runner.run_sync(agent, QUESTION)
    assert result.final_output == reply_text(kind)
    assert calls == [{"city": "Paris", "unit": "celsius"}]
    # both model calls of the run are one task, with no header: the tool result joined the task of the call
    assert len(task_ids) == 2 and task_ids[0] == task_ids[1], task_ids
    t = task(gateway, task_ids[0])
    assert t["requests"] == 2 and t["cost_picousd"] > 0, t


@pytest.mark.parametrize("streamed", [False, True])
def test_messages_to_anthropic_pass_through_unchanged(claude: anthropic.Anthropic, fakes: Fakes, streamed: bool) -> None:
    """A Messages client on an Anthropic upstream: its body goes as it is (model renamed), with
    anthropic-beta; the answer's bytes come back unchanged (the upstream's model name, which the translation
    never writes)."""
    from tests.conftest import ANTHROPIC_CHAT

    kwargs: dict[str, Any] = dict(model="chat-anthropic", max_tokens=50, system=INSTRUCTIONS,
                                  messages=[{"role": "user", "content": QUESTION}],
                                  metadata={"user_id": "user-1"},
                                  extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"})
    if streamed:
        with claude.messages.stream(**kwargs) as stream:
            types = [e.type for e in stream]
            reply = stream.get_final_message()
        assert types.count("message_stop") == 1 and types.count("message_delta") == 1
    else:
        reply = claude.messages.create(**kwargs)
    sent = fakes.anthropic.requests[-1]
    assert sent["json"]["model"] == ANTHROPIC_CHAT and "stop_sequences" not in sent["json"]
    assert sent["json"]["metadata"] == {"user_id": "user-1"} and sent["json"]["system"] == INSTRUCTIONS
    assert sent["headers"]["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14"
    assert reply.content[0].text == reply_text("anthropic")
    assert reply.model == ANTHROPIC_CHAT  # the upstream's own body: the translation would name the public model


def test_responses_parameters_are_translated_or_refused(client: openai.OpenAI, fakes: Fakes) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    client.responses.create(model="chat-openai", input=QUESTION, max_output_tokens=64, temperature=0.2,
                            text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
                            reasoning={"effort": "low"}, tool_choice="none")
    sent = fakes.openai.requests[-1]["json"]
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    assert (sent["max_tokens"], sent["temperature"], sent["reasoning_effort"]) == (64, 0.2, "low")
    # Ollama has no reasoning effort: refused, never dropped (the honest contract)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat-ollama", input=QUESTION, reasoning={"effort": "high"})
    assert "reasoning_effort" in refused.value.message
    assert fakes.ollama.requests == []


def test_images_reach_the_upstream_from_both_apis(client: openai.OpenAI, claude: anthropic.Anthropic,
                                                  fakes: Fakes) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    client.responses.create(model="chat-bedrock", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{png}"}]}])
    blocks = fakes.bedrock.requests[-1]["json"]["messages"][0]["content"]
    assert blocks[0] == {"text": "What is this?"} and blocks[1]["image"]["format"] == "png"
    claude.messages.create(model="chat-openai", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "What is this?"}]}])
    parts = fakes.openai.requests[-1]["json"]["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}


@pytest.mark.parametrize("api", ["responses", "messages"])
def test_a_stream_cut_mid_way_ends_with_the_apis_failure_event(client: openai.OpenAI, claude: anthropic.Anthropic,
                                                               fakes: Fakes, api: str) -> None:
    fakes.openai.fail("midstream_error")
    if api == "responses":
        events = list(client.responses.create(model="chat-openai", input=QUESTION, stream=True))
        assert events[-1].type == "response.failed" and events[-1].response.error.message
        assert "response.completed" not in [e.type for e in events]
    else:
        with pytest.raises(anthropic.APIStatusError) as failed:
            with claude.messages.stream(model="chat-openai", max_tokens=20,
                                        messages=[{"role": "user", "content": QUESTION}]) as stream:
                for _ in stream:
                    pass
        assert failed.value.body["error"]["type"] == "api_error"
