// The parts of the Web platform berth takes from well-kept reference
// implementations instead of writing them: WHATWG URL (jsdom's whatwg-url,
// which the URL Standard's own tests run against) and WHATWG Streams
// (web-streams-polyfill, derived from the Streams Standard's reference
// implementation). gen.go bundles this file to ../js/deps.js.
import { URL, URLSearchParams } from "whatwg-url";
import {
  ReadableStream, ReadableStreamDefaultReader, ReadableStreamBYOBReader, ReadableByteStreamController,
  ReadableStreamDefaultController, ReadableStreamBYOBRequest, WritableStream, WritableStreamDefaultWriter,
  WritableStreamDefaultController, TransformStream, TransformStreamDefaultController,
  ByteLengthQueuingStrategy, CountQueuingStrategy,
} from "web-streams-polyfill";

globalThis.__berthDeps = {
  URL, URLSearchParams,
  ReadableStream, ReadableStreamDefaultReader, ReadableStreamBYOBReader, ReadableByteStreamController,
  ReadableStreamDefaultController, ReadableStreamBYOBRequest, WritableStream, WritableStreamDefaultWriter,
  WritableStreamDefaultController, TransformStream, TransformStreamDefaultController,
  ByteLengthQueuingStrategy, CountQueuingStrategy,
};
