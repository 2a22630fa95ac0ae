#!/usr/bin/env escript
%% -*- erlang -*-
%%
%% OTP conformance oracle for trio-supervision.
%%
%% Usage: escript otp_harness.escript SCENARIOS.json
%%
%% Runs every scenario of the input file concurrently on a real OTP
%% `supervisor` (one process tree, supervisor and trace collector per
%% scenario) and prints one JSON line per scenario on stdout:
%%
%%     {"index": I, "trace": [[...], ...]}
%%     {"index": I, "error": "..."}        (harness problem; exit status 1)
%%
%% The scenario and trace formats are described in README.md next to this
%% file. Invalid input is reported on stderr with exit status 2.
%%
%% Timing: all scenarios start together. The harness picks a whole-second
%% boundary B of erlang:monotonic_time(millisecond) (floor semantics, the same
%% clock the supervisor's add_restart/1 reads with erlang:monotonic_time(1)),
%% calls supervisor:start_link/2 right at B and uses B as scenario time zero:
%% an action with "at": T runs at B + round(T * 1000) ms, so it falls in
%% monotonic second floor(B/1000 + T). A scenario whose start_link returns or
%% whose action runs more than ?MAX_LAG_MS late is reported as an error rather
%% than giving a trace with the wrong second buckets.

-module(otp_harness).
-mode(compile).
-behaviour(supervisor).

-export([main/1]).
%% supervisor callback, start functions, logger handler callback
-export([init/1, start_static/2, start_dynamic/3, log/2]).

-define(SHUTDOWN_MS, 5000).
-define(SETTLE_MS, 500).
-define(MAX_LAG_MS, 250).
-define(COLL_KEY, '$otp_harness_collector').

%%====================================================================
%% main
%%====================================================================

main([File]) ->
    Scenarios = read_scenarios(File),
    setup_logger(),
    run_all(Scenarios);
main(_) ->
    io:format(standard_error, "usage: escript otp_harness.escript SCENARIOS.json~n", []),
    halt(2).

read_scenarios(File) ->
    Bin = case file:read_file(File) of
              {ok, B} -> B;
              {error, E} -> die("cannot read ~ts: ~p", [File, E])
          end,
    Json = try json_decode(Bin)
           catch _:_ -> die("~ts: invalid JSON", [File])
           end,
    case Json of
        L when is_list(L) ->
            lists:map(fun({I, S}) ->
                              try parse_scenario(S)
                              catch throw:{invalid, Why} ->
                                      die("scenario ~b: ~ts", [I, Why])
                              end
                      end, lists:zip(lists:seq(0, length(L) - 1), L));
        _ -> die("~ts: top level must be a JSON array of scenarios", [File])
    end.

die(Fmt, Args) ->
    io:format(standard_error, "otp_harness: " ++ Fmt ++ "~n", Args),
    halt(2).

setup_logger() ->
    %% Drop the default handler (it would print reports on stdout) and add
    %% ours, which only turns supervisor give-up reports into trace lines.
    _ = logger:remove_handler(default),
    ok = logger:add_handler(otp_harness, ?MODULE, #{level => error}),
    ok = logger:set_primary_config(level, error).

run_all([]) ->
    halt(0);
run_all(Scenarios) ->
    Main = self(),
    Now = erlang:monotonic_time(millisecond),
    %% next whole second, at least 150 ms away so every runner is ready
    Zero = (floor_div(Now + 150, 1000) + 1) * 1000,
    Indexed = lists:zip(lists:seq(0, length(Scenarios) - 1), Scenarios),
    [spawn(fun() -> runner(Main, I, S, Zero) end) || {I, S} <- Indexed],
    MaxEnd = lists:max([scenario_end_ms(S) || S <- Scenarios]),
    Deadline = Zero + MaxEnd + 60000,
    collect(length(Scenarios), Deadline, 0, lists:seq(0, length(Scenarios) - 1)).

collect(0, _Deadline, Errors, _Pending) ->
    halt(case Errors of 0 -> 0; _ -> 1 end);
collect(N, Deadline, Errors, Pending) ->
    Wait = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {result, I, Trace} ->
            emit({obj, [{<<"index">>, I}, {<<"trace">>, Trace}]}),
            collect(N - 1, Deadline, Errors, lists:delete(I, Pending));
        {error, I, Msg} ->
            emit({obj, [{<<"index">>, I}, {<<"error">>, Msg}]}),
            collect(N - 1, Deadline, Errors + 1, lists:delete(I, Pending))
    after Wait ->
            [emit({obj, [{<<"index">>, I}, {<<"error">>, <<"harness timeout">>}]})
             || I <- Pending],
            halt(1)
    end.

emit(Term) ->
    ok = io:put_chars(standard_io, [json_encode(Term), $\n]).

floor_div(A, B) when A >= 0 -> A div B;
floor_div(A, B) -> -((-A + B - 1) div B).

%%====================================================================
%% Scenario parsing / validation
%%====================================================================

%% Internal scenario: map with atoms/binaries/ms.
parse_scenario(S) when is_map(S) ->
    Strategy = case maps:get(<<"strategy">>, S, missing) of
                   <<"one_for_one">> -> one_for_one;
                   <<"rest_for_one">> -> rest_for_one;
                   <<"one_for_all">> -> one_for_all;
                   <<"simple_one_for_one">> -> simple_one_for_one;
                   X -> invalid("bad strategy ~p", [X])
               end,
    Intensity = case maps:get(<<"intensity">>, S, missing) of
                    I when is_integer(I), I >= 0 -> I;
                    X1 -> invalid("bad intensity ~p", [X1])
                end,
    Period = case maps:get(<<"period">>, S, missing) of
                 P when is_integer(P), P > 0 -> P;
                 X2 -> invalid("bad period ~p", [X2])
             end,
    Children = case maps:get(<<"children">>, S, missing) of
                   Cs when is_list(Cs) -> [parse_child(C) || C <- Cs];
                   X3 -> invalid("bad children ~p", [X3])
               end,
    Ids = [Id || {Id, _} <- Children],
    length(lists:usort(Ids)) =:= length(Ids) orelse invalid("duplicate child ids", []),
    Strategy =/= simple_one_for_one orelse length(Children) =:= 1
        orelse invalid("simple_one_for_one needs exactly one child template", []),
    InitFail = case maps:get(<<"init_fail">>, S, #{}) of
                   M when is_map(M) ->
                       maps:map(fun(_, N) when is_integer(N), N >= 0 -> N;
                                   (K, N) -> invalid("bad init_fail ~ts: ~p", [K, N])
                                end, M);
                   X4 -> invalid("bad init_fail ~p", [X4])
               end,
    Actions0 = case maps:get(<<"actions">>, S, []) of
                   As when is_list(As) -> [parse_action(A) || A <- As];
                   X5 -> invalid("bad actions ~p", [X5])
               end,
    Actions = lists:keysort(1, Actions0),
    #{strategy => Strategy, intensity => Intensity, period => Period,
      children => Children, init_fail => InitFail, actions => Actions};
parse_scenario(X) ->
    invalid("scenario must be an object, got ~p", [X]).

parse_child(#{<<"id">> := Id} = C) when is_binary(Id) ->
    {Id, restart_type(maps:get(<<"restart">>, C, <<"permanent">>))};
parse_child(X) ->
    invalid("bad child ~p", [X]).

restart_type(<<"permanent">>) -> permanent;
restart_type(<<"transient">>) -> transient;
restart_type(<<"temporary">>) -> temporary;
restart_type(X) -> invalid("bad restart type ~p", [X]).

parse_action(#{<<"at">> := At, <<"op">> := Op} = A) when is_number(At), At >= 0 ->
    Ms = round(At * 1000),
    Child = case maps:get(<<"child">>, A, missing) of
                C when is_binary(C) -> C;
                X -> invalid("action ~p: bad child ~p", [A, X])
            end,
    case Op of
        <<"crash">> ->
            Reason = case maps:get(<<"reason">>, A, <<"abnormal">>) of
                         <<"abnormal">> -> boom;
                         <<"normal">> -> normal;
                         <<"shutdown">> -> shutdown;
                         <<"shutdown_r">> -> {shutdown, r};
                         X1 -> invalid("bad crash reason ~p", [X1])
                     end,
            {Ms, {crash, Child, Reason}};
        <<"fail_starts">> ->
            case maps:get(<<"count">>, A, missing) of
                N when is_integer(N), N >= 0 -> {Ms, {fail_starts, Child, N}};
                X2 -> invalid("bad fail_starts count ~p", [X2])
            end;
        <<"terminate_child">> -> {Ms, {api, terminate_child, Child}};
        <<"restart_child">> -> {Ms, {api, restart_child, Child}};
        <<"delete_child">> -> {Ms, {api, delete_child, Child}};
        <<"start_child">> ->
            R = restart_type(maps:get(<<"restart">>, A, <<"permanent">>)),
            {Ms, {start_child, Child, R}};
        _ -> invalid("bad op ~p", [Op])
    end;
parse_action(X) ->
    invalid("bad action ~p", [X]).

invalid(Fmt, Args) ->
    throw({invalid, io_lib:format(Fmt, Args)}).

scenario_end_ms(#{actions := []}) -> ?SETTLE_MS;
scenario_end_ms(#{actions := As}) -> element(1, lists:last(As)) + ?SETTLE_MS.

%%====================================================================
%% Scenario runner (parent of the supervisor)
%%====================================================================

runner(Main, Index, Scn, Zero) ->
    process_flag(trap_exit, true),
    Coll = spawn_link(fun() -> collector_init(maps:get(init_fail, Scn)) end),
    try run_scenario(Coll, Scn, Zero) of
        Trace0 ->
            Trace = canonical(maps:get(strategy, Scn), Trace0),
            Main ! {result, Index, Trace}
    catch
        throw:{harness_error, Msg} ->
            Main ! {error, Index, iolist_to_binary(Msg)};
        C:E:St ->
            Main ! {error, Index,
                    iolist_to_binary(io_lib:format("~p:~p ~p", [C, E, St]))}
    end.

run_scenario(Coll, Scn, Zero) ->
    #{strategy := Strategy, intensity := Intensity, period := Period,
      children := Children, actions := Actions} = Scn,
    Flags = #{strategy => Strategy, intensity => Intensity, period => Period},
    Specs = case Strategy of
                simple_one_for_one ->
                    [{TId, R}] = Children,
                    [child_spec(TId, {?MODULE, start_dynamic, [Coll, TId]}, R)];
                _ ->
                    [child_spec(Id, {?MODULE, start_static, [Coll, Id]}, R)
                     || {Id, R} <- Children]
            end,
    sleep_until(Zero),
    case supervisor:start_link(?MODULE, {Coll, Flags, Specs}) of
        {ok, Sup} ->
            check_lag(Zero, "start_link"),
            Ctx = #{sup => Sup, coll => Coll, strategy => Strategy, zero => Zero},
            run_actions(Ctx, Actions);
        {error, _} ->
            %% OTP 25 also leaves the EXIT of the dead supervisor for us.
            receive {'EXIT', _, _} -> ok after 100 -> ok end,
            record(Coll, [<<"sup_exit">>, <<"failed_to_start">>])
    end,
    collector_finish(Coll).

child_spec(Id, MFA, Restart) ->
    #{id => Id, start => MFA, restart => Restart, shutdown => ?SHUTDOWN_MS,
      type => worker, modules => [?MODULE]}.

run_actions(#{sup := Sup, coll := Coll, zero := Zero} = Ctx, [{At, Action} | Rest]) ->
    case wait_alive(Sup, Zero + At) of
        alive ->
            check_lag(Zero + At, "action"),
            put(last_at, At),
            act(Ctx, Action),
            run_actions(Ctx, Rest);
        {dead, Reason} ->
            record(Coll, [<<"sup_exit">>, exit_word(Reason)])
    end;
run_actions(#{sup := Sup, coll := Coll, zero := Zero}, []) ->
    %% settle: ?SETTLE_MS after the last action (or after time zero)
    LastAt = last_at(),
    case wait_alive(Sup, Zero + LastAt + ?SETTLE_MS) of
        alive ->
            exit(Sup, shutdown),
            receive {'EXIT', Sup, _} -> ok end,
            record(Coll, [<<"sup_exit">>, <<"stopped">>]);
        {dead, Reason} ->
            record(Coll, [<<"sup_exit">>, exit_word(Reason)])
    end.

%% The scheduled time of the last action run is kept in the process dictionary.
last_at() ->
    case get(last_at) of undefined -> 0; T -> T end.

exit_word(shutdown) -> <<"gave_up">>;
exit_word(Other) -> iolist_to_binary(io_lib:format("~p", [Other])).

%% Wait until the monotonic ms time Target; returns early if the supervisor dies.
wait_alive(Sup, Target) ->
    Wait = max(0, Target - erlang:monotonic_time(millisecond)),
    receive
        {'EXIT', Sup, Reason} -> {dead, Reason}
    after Wait ->
            %% still pick up a death that is already queued
            receive {'EXIT', Sup, Reason} -> {dead, Reason}
            after 0 -> alive
            end
    end.

sleep_until(Target) ->
    Wait = max(0, Target - erlang:monotonic_time(millisecond)),
    receive after Wait -> ok end.

check_lag(Target, What) ->
    Lag = erlang:monotonic_time(millisecond) - Target,
    case Lag > ?MAX_LAG_MS of
        true ->
            throw({harness_error,
                   io_lib:format("~s ran ~b ms late; whole-second alignment lost "
                                 "(machine overloaded?)", [What, Lag])});
        false ->
            ok
    end.

act(#{coll := Coll}, {fail_starts, Id, N}) ->
    call(Coll, {fail_starts, Id, N});
act(#{sup := Sup, coll := Coll} = Ctx, {crash, Id, Reason}) ->
    case sup_call(Sup, fun() -> current_pid(Ctx, Id) end) of
        {ok, {ok, Pid}} ->
            Ref = monitor(process, Pid),
            Pid ! {crash, Reason},
            receive {'DOWN', Ref, process, Pid, _} -> ok end,
            settle(Sup, Pid);
        {ok, not_running} ->
            record(Coll, [<<"skip">>, <<"crash">>, Id]);
        dead ->
            ok
    end;
act(#{sup := Sup, coll := Coll, strategy := simple_one_for_one}, {api, terminate_child, Id}) ->
    case call(Coll, {lookup, Id}) of
        undefined ->
            %% never started: there is no pid to pass
            record(Coll, [<<"api">>, <<"terminate_child">>, Id, <<"not_found">>]);
        Pid ->
            api_call(Sup, Coll, terminate_child, Id,
                     fun() -> supervisor:terminate_child(Sup, Pid) end)
    end;
act(#{sup := Sup, coll := Coll}, {api, Op, Id}) ->
    api_call(Sup, Coll, Op, Id, fun() -> supervisor:Op(Sup, Id) end);
act(#{sup := Sup, coll := Coll, strategy := simple_one_for_one}, {start_child, Id, _R}) ->
    api_call(Sup, Coll, start_child, Id, fun() -> supervisor:start_child(Sup, [Id]) end);
act(#{sup := Sup, coll := Coll}, {start_child, Id, R}) ->
    Spec = child_spec(Id, {?MODULE, start_static, [Coll, Id]}, R),
    api_call(Sup, Coll, start_child, Id, fun() -> supervisor:start_child(Sup, Spec) end).

api_call(Sup, Coll, Op, Id, Fun) ->
    case sup_call(Sup, Fun) of
        {ok, Result} ->
            record(Coll, [<<"api">>, atom_to_binary(Op), Id, result_word(Result)]);
        dead ->
            %% the supervisor died during the call: not traced
            ok
    end.

%% Run Fun, which makes calls to the supervisor. If the supervisor dies
%% meanwhile, wait for its EXIT, put it back for wait_alive/2 and return dead.
sup_call(Sup, Fun) ->
    try
        {ok, Fun()}
    catch
        exit:{_, {gen_server, call, [Sup | _]}} ->
            receive {'EXIT', Sup, R} -> self() ! {'EXIT', Sup, R} end,
            dead
    end.

%% Wait until the supervisor has handled the death of Pid and finished any
%% restart, including try_again retries (which it casts to itself): poll
%% which_children until Pid is gone and no child is `restarting'. Without this,
%% actions at the same "at" could interleave with a retry loop.
settle(Sup, Pid) ->
    case sup_call(Sup, fun() -> supervisor:which_children(Sup) end) of
        {ok, Children} ->
            case [P || {_, P, _, _} <- Children, P =:= restarting orelse P =:= Pid] of
                [] -> ok;
                _ -> settle(Sup, Pid)
            end;
        dead ->
            ok
    end.

result_word(ok) -> <<"ok">>;
result_word({ok, _}) -> <<"ok">>;
result_word({ok, _, _}) -> <<"ok">>;
result_word({error, not_found}) -> <<"not_found">>;
result_word({error, running}) -> <<"running">>;
result_word({error, restarting}) -> <<"restarting">>;
result_word({error, already_present}) -> <<"already_present">>;
result_word({error, {already_started, _}}) -> <<"already_started">>;
result_word({error, simple_one_for_one}) -> <<"simple_one_for_one">>;
result_word({error, _}) -> <<"error">>.

%% The pid of the running process of child Id, or not_running.
current_pid(#{sup := Sup, coll := Coll, strategy := simple_one_for_one}, Id) ->
    case call(Coll, {lookup, Id}) of
        undefined -> not_running;
        Pid ->
            Pids = [P || {_, P, _, _} <- supervisor:which_children(Sup)],
            case lists:member(Pid, Pids) of
                true -> {ok, Pid};
                false -> not_running
            end
    end;
current_pid(#{sup := Sup}, Id) ->
    case lists:keyfind(Id, 1, supervisor:which_children(Sup)) of
        {Id, Pid, _, _} when is_pid(Pid) -> {ok, Pid};
        _ -> not_running
    end.

%% simple_one_for_one stops all dynamic children at once when the supervisor
%% terminates, so the order of those stop lines is undefined: sort the run of
%% stop lines just before sup_exit by child name.
canonical(simple_one_for_one, Trace) ->
    case lists:reverse(Trace) of
        [[<<"sup_exit">>, _] = Exit | RevRest] ->
            {RevStops, RevBefore} =
                lists:splitwith(fun([<<"stop">>, _]) -> true; (_) -> false end, RevRest),
            lists:reverse(RevBefore) ++ lists:sort(RevStops) ++ [Exit];
        _ ->
            Trace
    end;
canonical(_, Trace) ->
    Trace.

%%====================================================================
%% supervisor callback
%%====================================================================

init({Coll, Flags, Specs}) ->
    %% the logger handler and the start functions run in this process
    put(?COLL_KEY, Coll),
    {ok, {Flags, Specs}}.

%%====================================================================
%% Start functions (run inside the supervisor) and children
%%====================================================================

start_static(Coll, Id) ->
    start_worker(Coll, Id).

%% simple_one_for_one: template args [Coll, TemplateId] ++ [Name]
start_dynamic(Coll, _TemplateId, Name) ->
    start_worker(Coll, Name).

start_worker(Coll, Name) ->
    case call(Coll, {try_start, Name}) of
        fail ->
            {error, injected};
        ok ->
            Sup = self(),
            Pid = spawn_link(fun() -> worker_init(Coll, Name, Sup) end),
            receive {Pid, ready} -> ok end,
            ok = call(Coll, {started, Name, Pid}),
            {ok, Pid}
    end.

worker_init(Coll, Name, Sup) ->
    process_flag(trap_exit, true),
    Sup ! {self(), ready},
    worker_loop(Coll, Name, Sup).

worker_loop(Coll, Name, Sup) ->
    receive
        {'EXIT', Sup, Reason} ->
            record(Coll, [<<"stop">>, Name]),
            exit(Reason);
        {crash, Reason} ->
            exit(Reason);
        _ ->
            worker_loop(Coll, Name, Sup)
    end.

%%====================================================================
%% logger handler: supervisor give-up reports -> ["gave_up", Id]
%%====================================================================

log(#{msg := {report, #{label := {supervisor, shutdown}, report := Report}}}, _Config) ->
    try
        case get(?COLL_KEY) of
            undefined ->
                ok;
            Coll ->
                {offender, Offender} = lists:keyfind(offender, 1, Report),
                record(Coll, [<<"gave_up">>, offender_name(Offender)])
        end
    catch
        _:_ -> ok
    end;
log(_Event, _Config) ->
    ok.

%% dynamic children: the name is the extra start argument
offender_name(Offender) ->
    case lists:keyfind(mfargs, 1, Offender) of
        {mfargs, {?MODULE, start_dynamic, [_, _, Name]}} -> Name;
        _ -> element(2, lists:keyfind(id, 1, Offender))
    end.

%%====================================================================
%% Trace collector (one per scenario)
%%====================================================================

collector_init(InitFail) ->
    collector_loop(#{trace => [], fails => InitFail, pids => #{}}).

collector_loop(#{trace := T, fails := F, pids := P} = S) ->
    receive
        {call, From, Ref, Req} ->
            {Reply, S1} =
                case Req of
                    {record, Ev} ->
                        {ok, S#{trace := [Ev | T]}};
                    {try_start, Id} ->
                        case maps:get(Id, F, 0) of
                            N when N > 0 ->
                                {fail, S#{trace := [[<<"start_failed">>, Id] | T],
                                          fails := F#{Id => N - 1}}};
                            _ ->
                                {ok, S}
                        end;
                    {started, Id, Pid} ->
                        {ok, S#{trace := [[<<"start">>, Id] | T], pids := P#{Id => Pid}}};
                    {fail_starts, Id, N} ->
                        {ok, S#{fails := F#{Id => N}}};
                    {lookup, Id} ->
                        {maps:get(Id, P, undefined), S};
                    finish ->
                        {lists:reverse(T), S}
                end,
            From ! {Ref, Reply},
            collector_loop(S1)
    end.

collector_finish(Coll) ->
    call(Coll, finish).

record(Coll, Ev) ->
    ok = call(Coll, {record, Ev}).

%% Synchronous, so trace lines are in causal order whoever records them.
call(Pid, Req) ->
    Ref = make_ref(),
    Pid ! {call, self(), Ref, Req},
    receive {Ref, Reply} -> Reply end.

%%====================================================================
%% Minimal JSON (OTP 25 has no json module)
%%====================================================================

json_decode(Bin) ->
    {V, Rest} = jv(ws(Bin)),
    <<>> = ws(Rest),
    V.

ws(<<C, R/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> ws(R);
ws(B) -> B.

jv(<<${, R/binary>>) -> jobj(ws(R), #{});
jv(<<$[, R/binary>>) -> jarr(ws(R), []);
jv(<<$", R/binary>>) -> jstr(R, []);
jv(<<"true", R/binary>>) -> {true, R};
jv(<<"false", R/binary>>) -> {false, R};
jv(<<"null", R/binary>>) -> {null, R};
jv(B) -> jnum(B, []).

jobj(<<$}, R/binary>>, M) when map_size(M) =:= 0 -> {M, R};
jobj(<<$", R/binary>>, M) ->
    {K, R1} = jstr(R, []),
    <<$:, R2/binary>> = ws(R1),
    {V, R3} = jv(ws(R2)),
    case ws(R3) of
        <<$,, R4/binary>> -> jobj(ws(R4), M#{K => V});
        <<$}, R4/binary>> -> {M#{K => V}, R4}
    end.

jarr(<<$], R/binary>>, []) -> {[], R};
jarr(B, Acc) ->
    {V, R1} = jv(B),
    case ws(R1) of
        <<$,, R2/binary>> -> jarr(ws(R2), [V | Acc]);
        <<$], R2/binary>> -> {lists:reverse([V | Acc]), R2}
    end.

jstr(<<$", R/binary>>, Acc) -> {iolist_to_binary(lists:reverse(Acc)), R};
jstr(<<$\\, E, R/binary>>, Acc) when E =/= $u ->
    C = case E of
            $" -> $"; $\\ -> $\\; $/ -> $/; $b -> $\b; $f -> $\f;
            $n -> $\n; $r -> $\r; $t -> $\t
        end,
    jstr(R, [C | Acc]);
jstr(<<"\\u", H:4/binary, R/binary>>, Acc) ->
    case {binary_to_integer(H, 16), R} of
        {Hi, <<"\\u", L:4/binary, R1/binary>>} when Hi >= 16#D800, Hi < 16#DC00 ->
            Lo = binary_to_integer(L, 16),
            CP = 16#10000 + ((Hi - 16#D800) bsl 10) + (Lo - 16#DC00),
            jstr(R1, [<<CP/utf8>> | Acc]);
        {CP, _} ->
            jstr(R, [<<CP/utf8>> | Acc])
    end;
jstr(<<C, R/binary>>, Acc) -> jstr(R, [C | Acc]).

jnum(<<C, R/binary>>, Acc)
  when (C >= $0 andalso C =< $9); C =:= $-; C =:= $+; C =:= $.; C =:= $e; C =:= $E ->
    jnum(R, [C | Acc]);
jnum(R, Acc) when Acc =/= [] ->
    S = lists:reverse(Acc),
    case lists:any(fun(C) -> lists:member(C, ".eE") end, S) of
        false -> {list_to_integer(S), R};
        true -> {to_float(S), R}
    end.

to_float(S) ->
    try list_to_float(S)
    catch error:badarg ->
            %% "1e5" / "1E5": Erlang needs a fraction
            {Mant, Exp} = lists:splitwith(fun(C) -> C =/= $e andalso C =/= $E end, S),
            case lists:member($., Mant) of
                true -> list_to_float(S);
                false -> list_to_float(Mant ++ ".0" ++ Exp)
            end
    end.

%% Terms: binary -> string, list -> array, integer, {obj, [{K, V}]} -> object.
json_encode(B) when is_binary(B) -> jenc_str(B);
json_encode(I) when is_integer(I) -> integer_to_binary(I);
json_encode(true) -> <<"true">>;
json_encode(false) -> <<"false">>;
json_encode(null) -> <<"null">>;
json_encode({obj, KVs}) ->
    [${, lists:join($,, [[jenc_str(K), $:, json_encode(V)] || {K, V} <- KVs]), $}];
json_encode(L) when is_list(L) ->
    [$[, lists:join($,, [json_encode(V) || V <- L]), $]].

%% ASCII-only output: everything outside printable ASCII is \u-escaped.
jenc_str(B) ->
    Chars = case unicode:characters_to_list(B) of
                L when is_list(L) -> L;
                _ -> binary_to_list(B)
            end,
    [$", [jenc_char(C) || C <- Chars], $"].

jenc_char($") -> <<"\\\"">>;
jenc_char($\\) -> <<"\\\\">>;
jenc_char(C) when C >= 32, C < 127 -> C;
jenc_char(C) when C < 16#10000 -> io_lib:format("\\u~4.16.0b", [C]);
jenc_char(C) ->
    C1 = C - 16#10000,
    [jenc_char(16#D800 + (C1 bsr 10)), jenc_char(16#DC00 + (C1 band 16#3FF))].
