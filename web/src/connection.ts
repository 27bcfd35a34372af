// The Confab connection of the meeting page: one WebSocket to /v1/ws with the subprotocol
// confab.v1, one binary protobuf frame per message (docs/protocol.md §2.1, §3), Hello first
// (§4), Ping heartbeats (§7.1), requests correlated by request_id (§3.2) and events handed to
// one listener (§3.3).

import { create, fromBinary, fromJson, toBinary, toJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientFrameSchema,
  ServerFrameSchema,
  ResponseSchema,
  type ClientFrame,
  type Event,
  type Response,
} from "./gen/confab/v1/envelope_pb";
import { ErrorCode } from "./gen/confab/v1/errors_pb";
import type { Welcome } from "./gen/confab/v1/session_pb";

/** The request cases of ClientFrame (e.g. "joinCall") and the value each carries. */
export type RequestCase = Exclude<ClientFrame["request"]["case"], undefined>;
type RequestInit = NonNullable<MessageInitShape<typeof ClientFrameSchema>["request"]>;
export type RequestValue<K extends RequestCase> = Extract<RequestInit, { case: K }>["value"];
type ResultValue<K extends string> = Extract<Response["result"], { case: K }> extends { value: infer V } ? V : never;

/** A request the server answered with an Error (§5.1): `code` is the ErrorCode's name. */
export class RequestError extends Error {
  constructor(
    readonly code: string,
    readonly field: string,
    message: string,
  ) {
    super(`${code}${field ? ` (${field})` : ""}: ${message}`);
  }
}

/** What the page puts in Hello: a room token (an invite or a guest's resume token, §25.3) or an
 * account's access token (§4.4). */
export interface Credentials {
  roomToken?: string;
  displayName?: string;
  accessToken?: string;
}

const CLIENT_NAME = "confab-web";
const CLIENT_VERSION = "0.1";

export class Connection {
  private ws!: WebSocket;
  private nextId = 1n;
  private pending = new Map<bigint, (r: Response) => void>();
  private heartbeat: number | undefined;
  welcome!: Welcome;
  /** Every event as it arrives, after the handshake. */
  onEvent: (e: Event) => void = () => {};
  /** The socket closed (code and reason from the close frame). */
  onClose: (code: number, reason: string) => void = () => {};

  /** Opens the socket to `url` and completes the handshake with the first of `attempts` the
   * server accepts: a refused Hello leaves the connection open for another (§4.1, §4.4).
   * Rejects with the last attempt's error. */
  static async open(url: string, attempts: (() => Promise<Credentials>)[]): Promise<Connection> {
    const c = new Connection();
    await c.connect(url);
    for (const [i, attempt] of attempts.entries()) {
      const creds = await attempt();
      try {
        c.welcome = (await c.request("hello", {
          protocolMajor: 1,
          protocolMinor: 0,
          clientName: CLIENT_NAME,
          clientVersion: CLIENT_VERSION,
          accessToken: creds.accessToken ?? "",
          roomToken: creds.roomToken ?? "",
          displayName: creds.displayName ?? "",
        })) as unknown as Welcome; // Hello is answered with Welcome (§4.2)
        break;
      } catch (e) {
        if (i === attempts.length - 1) {
          c.ws.close(1000, "bye");
          throw e;
        }
      }
    }
    const every = c.welcome.limits?.heartbeatIntervalMs || 15_000;
    c.heartbeat = window.setInterval(() => {
      c.request("ping", { clientTimeMs: BigInt(Date.now()) }).catch(() => {});
    }, every);
    return c;
  }

  private connect(url: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, "confab.v1");
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
      ws.onclose = (ev) => {
        window.clearInterval(this.heartbeat);
        for (const answer of this.pending.values()) {
          answer(create(ResponseSchema, { result: { case: "error", value: { code: ErrorCode.UNAVAILABLE, message: "connection closed" } } }));
        }
        this.pending.clear();
        this.onClose(ev.code, ev.reason);
      };
      ws.onmessage = (ev) => this.receive(new Uint8Array(ev.data as ArrayBuffer));
    });
  }

  private receive(bytes: Uint8Array) {
    const frame = fromBinary(ServerFrameSchema, bytes);
    if (frame.frame.case === "response") {
      const r = frame.frame.value;
      const answer = this.pending.get(r.requestId);
      if (answer) {
        this.pending.delete(r.requestId);
        answer(r);
      } else if (r.result.case === "error") {
        console.warn("connection-level error", r.result.value.message);
      }
    } else if (frame.frame.case === "event") {
      this.onEvent(frame.frame.value);
    }
  }

  private send(frame: ClientFrame): Promise<Response> {
    return new Promise((resolve) => {
      this.pending.set(frame.requestId, resolve);
      this.ws.send(toBinary(ClientFrameSchema, frame));
    });
  }

  /** Sends one request and resolves with its result, or rejects with a {@link RequestError}. */
  async request<K extends RequestCase>(kind: K, value: RequestValue<K>): Promise<ResultValue<K>> {
    const requestId = this.nextId++;
    const frame = create(ClientFrameSchema, { requestId, request: { case: kind, value } as RequestInit });
    const r = await this.send(frame);
    if (r.result.case === "error") {
      const e = r.result.value;
      throw new RequestError(ErrorCode[e.code] ?? String(e.code), e.field, e.message);
    }
    return r.result.value as ResultValue<K>;
  }

  /** A request given as protobuf JSON (`kind` is the request's JSON name, e.g. "joinCall");
   * answers the result as JSON, or `{ error: CODE }`. For the page's test hook. */
  async requestJson(kind: string, value: JsonValue): Promise<JsonValue> {
    const requestId = this.nextId++;
    const frame = fromJson(ClientFrameSchema, { requestId: requestId.toString(), [kind]: value });
    const r = await this.send(frame);
    if (r.result.case === "error") {
      const e = r.result.value;
      return { error: ErrorCode[e.code] ?? String(e.code), field: e.field, message: e.message };
    }
    return toJson(ResponseSchema, r) as JsonValue;
  }

  close() {
    this.ws.close(1000, "bye");
  }
}
