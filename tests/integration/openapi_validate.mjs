// Validates an OpenAPI document with @apidevtools/swagger-parser (a third-party validator, as
// SDK generators and documentation tools use): prints "valid" or the errors and exits 1.
import SwaggerParser from "@apidevtools/swagger-parser";

try {
  const api = await SwaggerParser.validate(process.argv[2]);
  console.log(`valid ${api.openapi}`);
} catch (err) {
  console.log(String(err.message));
  process.exit(1);
}
